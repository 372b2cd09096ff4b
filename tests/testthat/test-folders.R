# JPEG folders: image_folder(), image_files(), image_augment() and their use in
# alexnet_features(), predict() and alexnet_train(). The JPEG files are
# written by a test-only .Call (libjpeg), so no R package is needed.

# A smooth RGB image, dim c(h, w, 3), values 0..255.
smooth_image <- function(h = 48, w = 64, phase = 0) {
  y <- matrix(seq(0, 1, length.out = h), h, w)
  x <- matrix(seq(0, 1, length.out = w), h, w, byrow = TRUE)
  r <- 40 + 180 * x
  g <- 30 + 190 * y
  b <- 128 + 100 * sin(2 * pi * (x + y) / 2 + phase)
  round(array(c(r, g, b), c(h, w, 3)))
}

# Two classes, "cat" (3 images, one nested, one .JPG) and "dog" (2).
make_folder <- function() {
  root <- tempfile("folder")
  write_jpeg(file.path(root, "dog", "d1.jpg"), smooth_image(phase = 1))
  write_jpeg(file.path(root, "dog", "d2.jpeg"), smooth_image(40, 40, phase = 2))
  write_jpeg(file.path(root, "cat", "c1.JPG"), smooth_image(phase = 3))
  write_jpeg(file.path(root, "cat", "c2.jpg"), smooth_image(64, 48, phase = 4))
  write_jpeg(file.path(root, "cat", "deeper", "c3.jpg"), smooth_image(phase = 5))
  writeLines("not an image", file.path(root, "cat", "notes.txt"))
  root
}

test_that("predict() and alexnet_features() read JPEG paths as image_files() would", {
  root <- make_folder()
  on.exit(unlink(root, recursive = TRUE))
  net <- shared_net()
  files <- image_folder(root)$files[c(4, 1)]
  expect_identical(alexnet_features(net, files, "dense_2"),
                   alexnet_features(net, image_files(files), "dense_2"))
  p <- predict(net, files)
  expect_equal(dim(p), c(2L, 2L))
  expect_identical(p, predict(net, image_files(files)))
  expect_error(predict(net, file.path(root, "nope.jpg")), "nope.jpg", class = "alexnet_error")
})

test_that("image_folder() finds classes, files and labels", {
  root <- make_folder()
  on.exit(unlink(root, recursive = TRUE))
  x <- image_folder(root)
  expect_s3_class(x, "image_folder")
  expect_equal(length(x), 5L)
  expect_equal(levels(x$labels), c("cat", "dog"))
  expect_equal(as.character(x$labels), c(rep("cat", 3), rep("dog", 2)))
  expect_equal(basename(x$files), c("c1.JPG", "c2.jpg", "c3.jpg", "d1.jpg", "d2.jpeg"))
  expect_output(print(x), "5 JPEG files")
  expect_output(print(x), "cat \\(3\\), dog \\(2\\)")
  y <- x[c(1, 5)]
  expect_s3_class(y, "image_folder")
  expect_equal(as.character(y$labels), c("cat", "dog"))
  expect_equal(levels(y$labels), c("cat", "dog"))

  f <- image_files(x$files[4:5], labels = c("b", "a"), resize = "crop")
  expect_equal(levels(f$labels), c("a", "b"))
  expect_equal(f$resize, "crop")
  expect_null(image_files(x$files)$labels)
})

test_that("image_folder() refuses bad folders and options", {
  expect_error(image_folder(file.path(tempdir(), "no-such-folder")), "does not exist",
               class = "alexnet_error")
  empty <- tempfile("empty")
  dir.create(empty)
  on.exit(unlink(empty, recursive = TRUE))
  expect_error(image_folder(empty), "no class sub-folders", class = "alexnet_error")
  dir.create(file.path(empty, "a"))
  dir.create(file.path(empty, "b"))
  write_jpeg(file.path(empty, "a", "1.jpg"), smooth_image(8, 8))
  writeLines("x", file.path(empty, "b", "readme.txt"))
  expect_error(image_folder(empty), "b.*has no JPEG files", class = "alexnet_error")
  unlink(file.path(empty, "b"), recursive = TRUE)
  expect_error(image_folder(empty, size = 300), "networks' inputs.*224.*227", class = "alexnet_error")
  expect_error(image_folder(empty, augment = list()), "augment", class = "alexnet_error")
  expect_error(image_files(file.path(empty, "nope.jpg")), "nope.jpg", class = "alexnet_error")
  expect_error(image_folder(empty, resize = "squash"))
})

test_that("image_augment() checks its arguments", {
  a <- image_augment()
  expect_s3_class(a, "alexnet_augment")
  expect_equal(a$zoom, c(0.8, 1.2))
  expect_output(print(a), "<image_augment> shear 0.2")
  expect_equal(image_augment(zoom = c(0.9, 1.5))$zoom, c(0.9, 1.5))
  expect_error(image_augment(zoom = 1.5), class = "alexnet_error")
  expect_error(image_augment(zoom = c(1.2, 1.1)), class = "alexnet_error")
  expect_error(image_augment(shear = -1), class = "alexnet_error")
  expect_error(image_augment(flip = NA), class = "alexnet_error")
  expect_error(image_augment(rotation = 200), class = "alexnet_error")
})

test_that("image_augment() is exported and no `augment()` clashes with broom's generic", {
  exports <- getNamespaceExports("alexnet")
  expect_true("image_augment" %in% exports)
  expect_false("augment" %in% exports)
  expect_false(exists("augment", envir = asNamespace("alexnet"), inherits = FALSE))
})

test_that("a photo gives the same features from its file and from its pixels, at any size", {
  root <- tempfile("route")
  on.exit(unlink(root, recursive = TRUE))
  net <- shared_net()
  # no reduction, 2x (2 x 2 boxes), 3x and 6x; grain so that a resize
  # without antialiasing would differ
  for (size in list(c(200, 300), c(454, 454), c(700, 1000), c(1400, 1600))) {
    img <- smooth_image(size[1], size[2], phase = size[1])
    img <- pmin(pmax(img + sample(-20:20, length(img), replace = TRUE), 0), 255)
    f <- write_jpeg(file.path(root, sprintf("%dx%d.jpg", size[2], size[1])), img, quality = 90)
    px <- read_jpeg(f)
    expect_identical(dim(px), as.integer(c(size, 3)))
    expect_type(px, "integer")
    by_file <- alexnet_features(net, f, "conv_1")
    by_array <- alexnet_features(net, array(px, c(1, dim(px))), "conv_1")
    by_double <- alexnet_features(net, array(as.double(px), c(1, dim(px))), "conv_1")
    expect_lt(max(abs(by_file - by_array)) / max(abs(by_file)), 1e-3)
    expect_identical(by_array, by_double)
  }
  expect_error(read_jpeg(file.path(root, "nope.jpg")), "nope.jpg", class = "alexnet_error")
  expect_error(read_jpeg(f, max_megapixels = 0.5), "max_megapixels", class = "alexnet_error")
  fast <- image_files(f, fast_decode = TRUE)
  expect_output(print(fast), "fast decode")
  # libjpeg's DCT scaling: other pixels, close
  d <- alexnet_features(net, fast, "conv_1") - by_file
  expect_gt(max(abs(d)), 0)
  expect_error(image_files(f, fast_decode = NA), "fast_decode", class = "alexnet_error")
})

test_that("decoded pixels match the image, and features match an image_array", {
  root <- tempfile("px")
  on.exit(unlink(root, recursive = TRUE))
  img <- smooth_image(227, 227)
  write_jpeg(file.path(root, "a", "one.jpg"), img, quality = 100)
  write_jpeg(file.path(root, "b", "two.jpg"), smooth_image(100, 150, phase = 2))
  x <- image_folder(root)
  px <- source_pixels(x)
  expect_s3_class(px, "image_array")
  expect_equal(dim(px$pixels), c(2L, 227L, 227L, 3L))
  # quality 100, 4:4:4, a smooth image: the decoded pixels are the image's
  expect_lt(max(abs(px$pixels[1, , , ] - img)), 8)
  expect_lt(mean(abs(px$pixels[1, , , ] - img)), 1)

  net <- shared_net()
  f_folder <- alexnet_features(net, x, layer = "dense_2", batch_size = 1)
  f_array <- alexnet_features(net, px, layer = "dense_2")
  expect_equal(dim(f_folder), c(2L, 4096L))
  expect_equal(f_folder, f_array, tolerance = 1e-5)
  expect_equal(attr(f_folder, "labels"), factor(c("a", "b")))

  p <- predict(net, x)
  expect_equal(dim(p), c(2L, 2L))
  expect_equal(unname(rowSums(p)), c(1, 1), tolerance = 1e-5)
  expect_equal(unname(p), unname(predict(net, px)), tolerance = 1e-5)
  expect_s3_class(predict(net, x, type = "class"), "factor")

  # crop: short side 256, centre 227 (a different input than stretch)
  xc <- image_folder(root, resize = "crop")
  expect_false(isTRUE(all.equal(source_pixels(xc)$pixels[2, , , ], px$pixels[2, , , ])))
})

test_that("augmentation is reproducible and changes with the epoch, only in training", {
  root <- make_folder()
  on.exit(unlink(root, recursive = TRUE))
  x <- image_folder(root, augment = image_augment(rotation = 10), seed = 7)
  e1 <- source_pixels(x, 1:3, epoch = 1, training = TRUE, raw = TRUE)
  expect_identical(source_pixels(x, 1:3, epoch = 1, training = TRUE, raw = TRUE), e1)
  e2 <- source_pixels(x, 1:3, epoch = 2, training = TRUE, raw = TRUE)
  expect_false(identical(e1, e2))
  plain <- source_pixels(x, 1:3, epoch = 1, training = FALSE, raw = TRUE)
  expect_false(identical(e1, plain))
  # another seed, other transforms
  x8 <- image_folder(root, augment = image_augment(rotation = 10), seed = 8)
  expect_false(identical(source_pixels(x8, 1:3, epoch = 1, training = TRUE, raw = TRUE), e1))
  # features never augment
  net <- shared_net()
  xn <- image_folder(root)
  expect_equal(alexnet_features(net, x, "dense_3"), alexnet_features(net, xn, "dense_3"))
})

test_that("alexnet_train() trains from a folder, with validation", {
  root <- make_folder()
  on.exit(unlink(root, recursive = TRUE))
  x <- image_folder(root, augment = image_augment(), seed = 1)
  net <- alexnet(labels = c("cat", "dog"), seed = 1)
  on.exit(release(), add = TRUE)
  fit <- alexnet_train(net, x, validation = image_folder(root), epochs = 1, batch_size = 2,
                       optimizer = sgd(lr = 1e-5), seed = 1, verbose = FALSE)
  expect_s3_class(fit, "alexnet_fit")
  expect_equal(nrow(fit$history), 1L)
  expect_true(all(is.finite(unlist(fit$history[1, c("loss", "accuracy", "val_loss", "val_accuracy")]))))

  # reproducible: the same seeds give the same history
  net2 <- alexnet(labels = c("cat", "dog"), seed = 1)
  fit2 <- alexnet_train(net2, x, validation = image_folder(root), epochs = 1, batch_size = 2,
                        optimizer = sgd(lr = 1e-5), seed = 1, verbose = FALSE)
  expect_equal(fit2$history$loss, fit$history$loss)
  expect_equal(fit2$history$val_loss, fit$history$val_loss)

  fit3 <- alexnet_finetune(net2, x, batch_size = 3, verbose = FALSE,
                           schedule = finetune_schedule("dense_3", epochs = 1, lr = 1e-5))
  expect_equal(nrow(fit3$history), 1L)
})

test_that("bad files: stop names the file, skip warns once with the count", {
  root <- make_folder()
  on.exit(unlink(root, recursive = TRUE))
  file.create(file.path(root, "cat", "empty.jpg"))
  writeBin(c(as.raw(c(0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a)), as.raw(1:64)),
           file.path(root, "dog", "png.jpg"))
  good <- readBin(file.path(root, "dog", "d1.jpg"), "raw", file.size(file.path(root, "dog", "d1.jpg")))
  writeBin(good[seq_len(length(good) %/% 2)], file.path(root, "dog", "truncated.jpg"))
  net <- shared_net()

  x <- image_folder(root)
  expect_equal(length(x), 8L)
  for (bad in c("empty.jpg", "png.jpg", "truncated.jpg")) {
    i <- which(basename(x$files) == bad)
    expect_error(alexnet_features(net, x[i], "dense_3"), bad, class = "alexnet_error")
  }
  expect_error(alexnet_features(net, x, "dense_3", batch_size = 3), "empty.jpg",
               class = "alexnet_error")

  xs <- image_folder(root, on_error = "skip")
  expect_warning(f <- alexnet_features(net, xs, "dense_3", batch_size = 3),
                 "3 image files could not be read")
  bad_rows <- basename(xs$files) %in% c("empty.jpg", "png.jpg", "truncated.jpg")
  expect_true(all(is.na(f[bad_rows, ])))
  expect_false(anyNA(f[!bad_rows, ]))
  expect_warning(p <- predict(net, xs, type = "class"), "could not be read")
  expect_true(all(is.na(p[bad_rows])))

  tnet <- alexnet(labels = c("cat", "dog"), seed = 2)
  on.exit(release(), add = TRUE)
  expect_error(alexnet_train(tnet, x, epochs = 1, batch_size = 4, optimizer = sgd(lr = 1e-5),
                             seed = 1, verbose = FALSE),
               "Could not read the image", class = "alexnet_error")
  warnings <- list()
  fit <- withCallingHandlers(
    alexnet_train(tnet, xs, validation = xs, epochs = 2, batch_size = 3,
                  optimizer = sgd(lr = 1e-5), seed = 1, verbose = FALSE),
    warning = function(w) {
      warnings[[length(warnings) + 1L]] <<- conditionMessage(w)
      invokeRestart("muffleWarning")
    })
  expect_length(warnings, 1L)
  expect_match(warnings[[1]], "Skipped 3 image files")
  expect_match(warnings[[1]], "empty.jpg")
  expect_equal(nrow(fit$history), 2L)
  expect_true(all(is.finite(fit$history$loss)))
  expect_true(all(is.finite(fit$history$val_loss)))
  # R is still fine
  expect_equal(1 + 1, 2)
})

test_that("a file with a non-ASCII name loads", {
  skip_if_not(isTRUE(l10n_info()$`UTF-8`), "not a UTF-8 locale")
  root <- tempfile("utf8")
  on.exit(unlink(root, recursive = TRUE))
  name <- "caf\u00e9_\u00fc\u4e2d.jpg"
  write_jpeg(file.path(root, "k\u00e4se", name), smooth_image())
  x <- image_folder(root)
  expect_equal(levels(x$labels), "k\u00e4se")
  expect_equal(basename(x$files), name)
  f <- alexnet_features(shared_net(), x, "dense_3")
  expect_false(anyNA(f))
})

test_that("an interrupt during training from a folder returns and frees the loader", {
  root <- make_folder()
  on.exit(unlink(root, recursive = TRUE))
  threads <- function() if (dir.exists("/proc/self/task")) length(list.files("/proc/self/task")) else NA
  net <- alexnet(labels = c("cat", "dog"), seed = 3)
  on.exit(release(), add = TRUE)
  before <- threads()
  untrace_steps <- after_each_step(function(epoch) send_interrupt())
  on.exit(untrace_steps(), add = TRUE)
  expect_warning(fit <- alexnet_train(net, image_folder(root), epochs = 2, batch_size = 2,
                                      optimizer = sgd(lr = 1e-5), seed = 1, verbose = FALSE),
                 "interrupted")
  expect_true(fit$interrupted)
  expect_equal(threads(), before)  # the loader's workers were joined on exit
  expect_equal(nrow(predict(net, image_folder(root))), 5L)
})

test_that("image files that are not JPEG are left out with a warning naming them", {
  root <- make_folder()
  on.exit(unlink(root, recursive = TRUE))
  writeBin(as.raw(c(0x89, 0x50, 0x4e, 0x47)), file.path(root, "dog", "photo.png"))
  expect_warning(x <- image_folder(root), "1 image file that is not JPEG was left out: .*photo.png")
  expect_equal(length(x), 5L)
  unlink(file.path(root, "dog", "photo.png"))
  expect_no_warning(image_folder(root))   # notes.txt is not an image
})
