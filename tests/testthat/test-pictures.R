# What the network sees: alexnet_activations(), alexnet_gradcam(),
# plot_filters() and the plots. The engine's Grad-CAM is checked against
# PyTorch's autograd in tests/engine (test_gradcam); these check what R
# makes of it.

test_that("activation maps are the layer's features, unflattened", {
  net <- alexnet(classes = 2, seed = 1, labels = c("a", "b"))
  x <- image_array(random_pixels(n = 3, h = 50, w = 60, seed = 4), labels = c("a", "b", "a"))
  for (layer in c("conv_1", "lrn_2", "convpool_5")) {
    a <- alexnet_activations(net, x, layer = layer)
    f <- alexnet_features(net, x, layer = layer)
    tab <- alexnet_layer_table(net)
    row <- tab[tab$name == layer, ]
    expect_s3_class(a, "alexnet_activations")
    expect_identical(dim(a), c(3L, row$channels, row$height, row$width))
    # feature k of a row is (channel, row, column) in row-major order
    expect_identical(as.vector(aperm(unclass(a), c(1L, 4L, 3L, 2L))), as.vector(f))
    expect_identical(attr(a, "layer"), layer)
  }
  expect_identical(attr(a, "labels"), x$labels)
  expect_output(print(a), "convpool_5: 3 images, 256 channels of 6 x 6")
  expect_error(alexnet_activations(net, x, layer = "dense_1"), "dense layer", class = "alexnet_error")
  expect_error(alexnet_activations(net, x, layer = "conv_9"), "not a layer name", class = "alexnet_error")
  expect_error(alexnet_activations(net, character(0)), "no images", class = "alexnet_error")
})

test_that("Grad-CAM gives one map per image for the predicted or the asked class", {
  net <- alexnet(classes = 3, seed = 2, labels = c("a", "b", "c"))
  x <- random_pixels(n = 4, h = 80, w = 80, seed = 5)
  before <- .Call(C_test_weights_digest, net$ptr)
  cam <- alexnet_gradcam(net, x)
  expect_s3_class(cam, "alexnet_gradcam")
  expect_identical(dim(cam), c(4L, 13L, 13L))
  expect_identical(cam$layer, "conv_5")
  expect_identical(cam$class, predict(net, x, type = "class"))
  expect_true(all(cam >= 0) && any(cam > 0))
  # a label, a number and a factor name the same class
  by_label <- alexnet_gradcam(net, x, class = "b")
  expect_identical(unclass(alexnet_gradcam(net, x, class = 2)), unclass(by_label))
  expect_identical(as.character(by_label$class), rep("b", 4))
  per_image <- alexnet_gradcam(net, x, class = c("a", "b", "c", "a"))
  expect_identical(as.character(per_image$class), c("a", "b", "c", "a"))
  expect_equal(unclass(per_image)[2, , ], unclass(by_label)[2, , ])
  # another layer: its size
  expect_identical(dim(alexnet_gradcam(net, x, layer = "pool_2")), c(4L, 13L, 13L))
  expect_identical(dim(alexnet_gradcam(net, x[1:2, , , ], layer = "conv_2")), c(2L, 27L, 27L))
  # the weights are as they were, and batches do not change the maps
  expect_identical(.Call(C_test_weights_digest, net$ptr), before)
  expect_equal(unclass(alexnet_gradcam(net, x, batch_size = 3)), unclass(cam), tolerance = 1e-6)
  expect_output(print(cam), "conv_5, 4 images, maps of 13 x 13")
})

test_that("Grad-CAM refuses what it cannot compute, by name", {
  net <- alexnet(classes = 2, seed = 1, labels = c("cat", "dog"))
  x <- random_pixels(n = 2, h = 40, w = 40)
  expect_error(alexnet_gradcam(net, x, layer = "dense_2"), "dense layer", class = "alexnet_error")
  expect_error(alexnet_gradcam(net, x, layer = "softmax"), "dense layer|no maps", class = "alexnet_error")
  expect_error(alexnet_gradcam(net, x, class = "zebra"), "zebra", class = "alexnet_error")
  expect_error(alexnet_gradcam(net, x, class = 3), "1..2", class = "alexnet_error")
  expect_error(alexnet_gradcam(net, x, class = c("cat", "dog", "cat")), "one per image", class = "alexnet_error")
  expect_error(alexnet_gradcam(net, x, class = NA), "class", class = "alexnet_error")
  expect_error(alexnet_gradcam(net, character(0)), "no images", class = "alexnet_error")
})

test_that("a JPEG file and an array of its pixels give the same Grad-CAM", {
  net <- alexnet(classes = 2, seed = 3)
  px <- array(as.integer(random_pixels(n = 1, h = 120, w = 90, seed = 6)), c(120, 90, 3))
  path <- withr::local_tempfile(fileext = ".jpg")
  .Call(C_test_write_jpeg, path, px, 95L)
  decoded <- read_jpeg(path)
  from_file <- alexnet_gradcam(net, path, class = 1)
  from_array <- alexnet_gradcam(net, array(decoded, c(1, dim(decoded))), class = 1)
  expect_identical(unclass(from_file)[1, , ], unclass(from_array)[1, , ])
})

test_that("the pictures draw to a PNG", {
  skip_if_not(capabilities("png"), "no PNG device")
  net <- alexnet(classes = 2, seed = 1, labels = c("a", "b"))
  x <- image_array(random_pixels(n = 2, h = 64, w = 64, seed = 7), labels = c("a", "b"))
  png_file <- function() withr::local_tempfile(fileext = ".png", .local_envir = parent.frame())
  f1 <- png_file()
  grDevices::png(f1, 800, 560)
  w <- plot_filters(net)
  grDevices::dev.off()
  expect_identical(dim(w), c(96L, 3L, 11L, 11L))
  # PyTorch's layout (out, in, row, column): the parameter block starts with
  # filter 1's red row 1, then its row 2
  p <- alexnet:::net_params(net)[1:22]
  expect_equal(c(w[1, 1, 1, ], w[1, 1, 2, ]), p, tolerance = 1e-7)
  expect_gt(file.size(f1), 10000)
  f2 <- png_file()
  grDevices::png(f2, 600, 600)
  a1 <- alexnet_activations(net, x, layer = "pool_1")
  expect_identical(plot(a1, image = 2, k = 9), a1)
  grDevices::dev.off()
  expect_gt(file.size(f2), 5000)
  f3 <- png_file()
  grDevices::png(f3, 900, 400)
  cam <- alexnet_gradcam(net, x)
  plot(cam, image = 1:2)
  grDevices::dev.off()
  expect_gt(file.size(f3), 20000)
  expect_error(plot(cam, image = 3), "1..2", class = "alexnet_error")
  expect_error(plot_filters(net, layer = "dense_1"), "conv_1", class = "alexnet_error")
  expect_error(plot(alexnet_activations(net, x, layer = "pool_1"), image = 5), "image", class = "alexnet_error")
})
