# The three AlexNets (heuritech, caffe, torchvision) and the weights files of
# other frameworks, from R. The engine's tests check each variant's layers
# against PyTorch (tests/engine: arch.anfx, foreign.anfx); these check what a
# user sees.

# a genuine torch.save file of torchvision's alexnet() state dict, made small
# by strided storages (tools/make_torch_fixtures.py)
pth <- system.file("extdata", "torchvision_alexnet_strided.pth", package = "alexnet")

# The two images of tools/make_fixtures.py's R fixture: pixel (i, y, x, c) =
# (31 i + 7 y + 13 x + 50 c) mod 256, as c(n, height, width, channels).
pattern_images <- function() {
  g <- expand.grid(i = 0:1, y = 0:223, x = 0:223, c = 0:2)
  array((31 * g$i + 7 * g$y + 13 * g$x + 50 * g$c) %% 256, c(2, 224, 224, 3))
}

test_that("each variant has its layers, input and parameters", {
  expect_identical(alexnet_layers(), alexnet_layers("heuritech"))
  expect_identical(alexnet_layers("caffe")[1:6], c("conv_1", "lrn_1", "convpool_1", "conv_2", "lrn_2", "pool_2"))
  expect_identical(alexnet_layers("torchvision")[1:4], c("conv_1", "convpool_1", "conv_2", "pool_2"))
  expect_error(alexnet_layers("vgg"), "must be a network or one of")
  tv <- alexnet(arch = "torchvision", classes = 1000, seed = 1)
  expect_identical(tv$arch, "torchvision")
  tab <- alexnet_layer_table(tv)
  expect_equal(sum(tab$params), 61100840)
  expect_identical(tab$output[tab$name == "conv_1"], "64x55x55")
  expect_false(any(grepl("group", tab$operation)))
  out <- capture.output(print(tv))
  expect_match(out[1], "torchvision's")
  expect_true(any(grepl("input: 3x224x224 RGB", out)))
  # a fresh torchvision net takes torchvision's normalisation
  expect_equal(.Call(alexnet:::C_net_scale, tv$ptr, NULL), 1 / (255 * c(0.229, 0.224, 0.225)), tolerance = 1e-6)
  cf <- alexnet(arch = "caffe", classes = 2, seed = 1)
  expect_match(capture.output(print(cf))[1], "BVLC Caffe's")
  expect_true(any(grepl("LRN 5 \\(alpha 1e-4 / 5, beta 0.75, k 1\\)", alexnet_layer_table(cf)$operation)))
  expect_error(alexnet(arch = "resnet"), "must be one of")
  rm(tv, cf)
  release()
})

test_that("a torchvision state dict loads by name and gives torchvision's outputs", {
  info <- weights_info(pth)
  expect_identical(info$kind, "torch")
  expect_identical(info$arch, "torchvision")
  expect_identical(info$classes, 1000L)
  expect_output(print(info), "PyTorch state dict")
  net <- alexnet(weights = pth, seed = 1)
  expect_identical(net$arch, "torchvision")
  expect_identical(net$labels, imagenet_classes())
  expect_true(all(attr(net, "weights_report")$status == "loaded"))
  expect_identical(attr(attr(net, "weights_report"), "kind"), "torch")
  # PyTorch's torchvision.models.alexnet on the same file and pixels
  ref <- unname(as.matrix(utils::read.csv(test_path("fixtures", "torchvision_alexnet_strided_logits.csv"),
                                          header = FALSE)))
  logits <- alexnet_features(net, pattern_images(), layer = "dense_3")
  expect_equal(unname(logits), ref, tolerance = 1e-4)
  expect_identical(as.character(predict(net, pattern_images(), type = "class")),
                   imagenet_classes()[max.col(ref, ties.method = "first")])
  # a 2-class net keeps its own dense_3, by name, drawn as a fresh net's
  two <- alexnet(weights = pth, classes = 2, labels = c("a", "b"), seed = 1)
  rep <- attr(two, "weights_report")
  expect_identical(rep$status[rep$layer == "dense_3"], "kept")
  expect_identical(rep$file_shape[rep$layer == "dense_3"], "W (1000, 4096), b (1000,)")
  fresh <- alexnet(arch = "torchvision", classes = 2, seed = 1)
  load_weights(fresh, pth)
  expect_identical(.Call(C_test_weights_digest, two$ptr), .Call(C_test_weights_digest, fresh$ptr))
  rm(fresh)
  rm(net, two)
  release()
})

test_that("weights of one variant do not load into another, and say why", {
  heur <- alexnet(classes = 1000, seed = 2)
  before <- .Call(alexnet:::C_test_weights_digest, heur$ptr)
  expect_error(load_weights(heur, pth), "torchvision.*heuritech")
  expect_identical(.Call(alexnet:::C_test_weights_digest, heur$ptr), before)
  expect_error(alexnet(weights = pth, arch = "caffe"), "holds the \"torchvision\" variant")
  # a file of the package keeps its variant and per-channel scale
  tv <- alexnet(weights = pth, seed = 1)
  file <- file.path(local_test_dir(), "tv.h5")
  save_weights(tv, file)
  expect_identical(weights_info(file)$arch, "torchvision")
  back <- alexnet(weights = file, seed = 9)
  expect_identical(back$arch, "torchvision")
  expect_identical(.Call(alexnet:::C_test_weights_digest, back$ptr), .Call(alexnet:::C_test_weights_digest, tv$ptr))
  expect_equal(.Call(alexnet:::C_net_scale, back$ptr, NULL), .Call(alexnet:::C_net_scale, tv$ptr, NULL))
  expect_error(load_weights(heur, file), "torchvision.*heuritech")
  rm(heur, tv, back)
  release()
})

test_that("files that are not AlexNet weights give clear errors", {
  dir <- local_test_dir()
  # a Caffe model without AlexNet's layers
  tiny <- file.path(dir, "tiny.caffemodel")
  writeBin(as.raw(c(0x0a, 0x03, 0x6e, 0x65, 0x74)), tiny)   # NetParameter{name: "net"}, no layers
  expect_error(alexnet(weights = tiny), "tiny.caffemodel")
  # a truncated .pth names the file
  bytes <- readBin(pth, "raw", file.size(pth))
  cut <- file.path(dir, "cut.pth")
  writeBin(bytes[seq_len(length(bytes) %/% 2)], cut)
  expect_error(alexnet(weights = cut), "cut.pth")
  # a FIFO named like a weights file is refused at once
  fifo <- file.path(dir, "fifo.pth")
  if (identical(system2("mkfifo", fifo), 0L)) {
    expect_error(weights_info(fifo), "not a regular file")
  }
})

test_that("images reach each variant at its own input size, the same by every route", {
  dir <- local_test_dir()
  px <- random_pixels(2, 60, 80, seed = 5)
  files <- file.path(dir, c("a.jpg", "b.jpg"))
  for (i in 1:2) write_jpeg(files[i], px[i, , , ])
  decoded <- aperm(simplify2array(lapply(files, read_jpeg)), c(4, 1, 2, 3))
  tv <- alexnet(arch = "torchvision", classes = 3, seed = 3)
  f_files <- alexnet_features(tv, files)
  expect_identical(dim(f_files), c(2L, 9216L))
  expect_identical(f_files, alexnet_features(tv, decoded))
  expect_identical(f_files, alexnet_features(tv, image_files(files)))
  # a 224 x 224 array goes in as it is: the same as its upsampled twin would not be
  a224 <- random_pixels(1, 224, 224, seed = 6)
  expect_identical(dim(alexnet_features(tv, a224, layer = "conv_1")), c(1L, 64L * 55L * 55L))
  # a folder made for another size is refused
  expect_error(alexnet_features(tv, image_files(files, size = 227)), "227 x 227 images, but the network takes 224")
  expect_error(image_files(files, size = 300), "must be one of the networks' inputs")
  # Grad-CAM and its picture at 224
  cam <- alexnet_gradcam(tv, files, class = 1)
  expect_identical(dim(cam), c(2L, 13L, 13L))
  png <- file.path(dir, "cam.png")
  grDevices::png(png)
  plot(cam, image = 1:2)
  grDevices::dev.off()
  expect_gt(file.size(png), 1000)
  rm(tv)
  release()
})

test_that("the variants train, and torchvision's frozen rows train exactly as its images", {
  train <- stripes(16, 1)
  run <- function(frozen_once) {
    net <- alexnet(arch = "torchvision", labels = c("h", "v"), seed = 4)
    unfreeze(net, from = "dense_1")
    fit <- alexnet_train(net, train, epochs = 2, batch_size = 8, seed = 3, optimizer = sgd(lr = 1e-3),
                         frozen_once = frozen_once)
    list(fit = fit, digest = .Call(C_test_weights_digest, net$ptr))
  }
  once <- run(TRUE)
  every <- run(FALSE)
  # torchvision drops units of convpool_5 itself: its rows are kept, the mask drawn on them
  expect_identical(once$fit$frozen_once, "convpool_5")
  expect_identical(once$fit$history[, 1:3], every$fit$history[, 1:3])
  expect_identical(once$digest, every$digest)
  cf <- alexnet(arch = "caffe", labels = c("h", "v"), seed = 4)
  fit <- alexnet_train(cf, train, epochs = 1, batch_size = 8, seed = 3)
  expect_true(all(is.finite(fit$history$loss)))
  rm(cf)
  release()
})
