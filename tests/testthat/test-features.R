test_that("features have one row per image and the size of the layer", {
  net <- shared_net()
  x <- random_pixels(2)
  sizes <- c(conv_1 = 96 * 55 * 55, pool_1 = 96 * 27 * 27, convpool_1 = 96 * 27 * 27,
             conv_2 = 256 * 27 * 27, lrn_2 = 256 * 13 * 13, conv_5 = 256 * 13 * 13,
             convpool_5 = 9216, dense_1 = 4096, dense_3 = 2, softmax = 2)
  for (layer in names(sizes)) {
    f <- alexnet_features(net, x, layer = layer)
    expect_true(is.matrix(f) && is.double(f), label = layer)
    expect_identical(dim(f), c(2L, as.integer(sizes[[layer]])), label = layer)
    expect_null(dimnames(f))
    expect_null(attr(f, "labels"))
    expect_true(all(is.finite(f)), label = layer)
  }
  # the default layer is convpool_5; ReLU and pooling outputs are >= 0
  f <- alexnet_features(net, x)
  expect_identical(dim(f), c(2L, 9216L))
  expect_true(all(f >= 0))
  expect_true(any(f > 0))
})

test_that("features are deterministic for a seed and differ between seeds", {
  x <- random_pixels(2)
  a <- alexnet(classes = 2, seed = 7)
  fa <- alexnet_features(a, x, "dense_2")
  expect_identical(alexnet_features(a, x, "dense_2"), fa)
  rm(a)
  release()
  b <- alexnet(classes = 2, seed = 7)
  expect_identical(alexnet_features(b, x, "dense_2"), fa)
  rm(b)
  release()
  c8 <- alexnet(classes = 2, seed = 8)
  fc <- alexnet_features(c8, x, "dense_2")
  expect_false(isTRUE(all.equal(fc, fa)))
  rm(c8)
  release()
})

test_that("images give different features, batches do not change them", {
  net <- shared_net()
  x <- random_pixels(3, seed = 2)
  f3 <- alexnet_features(net, x, "convpool_5", batch_size = 3)
  expect_false(isTRUE(all.equal(f3[1, ], f3[2, ])))
  f1 <- alexnet_features(net, x, "convpool_5", batch_size = 1)
  f2 <- alexnet_features(net, x, "convpool_5", batch_size = 2)
  expect_equal(f1, f3, tolerance = 1e-5)
  expect_equal(f2, f3, tolerance = 1e-5)
  # a big batch size is capped at the number of images
  expect_equal(alexnet_features(net, x, "convpool_5", batch_size = 1000), f3, tolerance = 1e-5)
  # a row does not depend on the other images
  expect_equal(alexnet_features(net, x[2, , , , drop = FALSE], "convpool_5"), f3[2, , drop = FALSE],
               tolerance = 1e-5)
})

test_that("grey and RGB inputs both work, grey is copied to R, G, B", {
  net <- shared_net()
  grey3 <- random_pixels(2, channels = 0, seed = 3)           # c(n, h, w)
  grey4 <- array(grey3, dim = c(dim(grey3), 1))                # c(n, h, w, 1)
  rgb <- array(grey3, dim = c(dim(grey3), 3))                  # the same in R, G, B
  f3 <- alexnet_features(net, grey3, "conv_3")
  expect_identical(dim(f3), c(2L, 384L * 13L * 13L))
  expect_identical(alexnet_features(net, grey4, "conv_3"), f3)
  expect_equal(alexnet_features(net, rgb, "conv_3"), f3, tolerance = 1e-6)
  col <- random_pixels(2, channels = 3, seed = 4)
  expect_false(isTRUE(all.equal(alexnet_features(net, col, "conv_3"), f3)))
})

test_that("integer pixels are accepted", {
  net <- shared_net()
  x <- round(random_pixels(1, h = 30, w = 20))
  xi <- x
  storage.mode(xi) <- "integer"
  expect_identical(alexnet_features(net, xi, "pool_2"), alexnet_features(net, x, "pool_2"))
})

test_that("any image size is resized to 227 x 227", {
  x <- random_pixels(1, h = 50, w = 300, channels = 3)
  v <- .Call(alexnet:::C_test_image_to_input, x, 1L)
  expect_length(v, 3 * 227 * 227)
  expect_true(all(v >= 0 & v <= 255))
  # a constant image stays constant
  flat <- array(rep(c(10, 20, 30), each = 40 * 60), dim = c(1, 40, 60, 3))
  v <- .Call(alexnet:::C_test_image_to_input, flat, 1L)
  expect_equal(v, rep(c(10, 20, 30), each = 227 * 227), tolerance = 1e-6)
  # a 1 x 1 image too
  v <- .Call(alexnet:::C_test_image_to_input, array(77, dim = c(1, 1, 1)), 1L)
  expect_equal(v, rep(77, 3 * 227 * 227))
})

test_that("a 227 x 227 input is not resized and gives what the engine gives", {
  net <- shared_net()
  x <- random_pixels(2, h = 227, w = 227, channels = 3, seed = 5)
  # the engine's input layout: per image, channel, row, column (row-major)
  engine_input <- function(img) as.vector(aperm(img, c(2, 1, 3)))   # img[y, x, c]
  for (i in 1:2) {
    v <- .Call(alexnet:::C_test_image_to_input, x, i)
    expect_equal(v, engine_input(x[i, , , ]), tolerance = 1e-6)
  }
  input <- c(engine_input(x[1, , , ]), engine_input(x[2, , , ]))
  for (layer in c("conv_1", "convpool_5", "softmax")) {
    until <- .Call(alexnet:::C_output_find, net$ptr, layer)
    direct <- .Call(alexnet:::C_test_forward_input, net$ptr, input, until)
    expect_equal(alexnet_features(net, x, layer), direct, tolerance = 1e-6, label = layer)
  }
})

test_that("the mean is subtracted per channel before conv_1", {
  net <- shared_net()   # zero biases: a mean-coloured image gives conv_1 == 0
  m <- c(123.68, 116.779, 103.939)
  x <- array(rep(m, each = 2 * 32 * 32), dim = c(2, 32, 32, 3))
  expect_true(all(abs(alexnet_features(net, x, "conv_1")) < 1e-3))
  y <- x
  y[, , , 1] <- 200
  expect_true(any(alexnet_features(net, y, "conv_1") > 1e-3))
})

test_that("labels of an image_array come back as an attribute", {
  net <- shared_net()
  imgs <- image_array(random_pixels(3), labels = c("dog", "cat", "dog"))
  f <- alexnet_features(net, imgs, "dense_3")
  expect_identical(dim(f), c(3L, 2L))
  expect_identical(attr(f, "labels"), factor(c("dog", "cat", "dog")))
  expect_equal(f, alexnet_features(net, imgs$pixels, "dense_3"), ignore_attr = "labels")
})

test_that("image_array objects", {
  px <- random_pixels(4, channels = 0)
  imgs <- image_array(px, labels = factor(c("a", "b", "a", "b"), levels = c("b", "a")))
  expect_s3_class(imgs, "image_array")
  expect_identical(levels(imgs$labels), c("b", "a"))
  expect_output(print(imgs), "4 images of 28 x 28 pixels, grey")
  expect_output(print(imgs), "b \\(2\\), a \\(2\\)")
  sub <- imgs[2:3]
  expect_identical(dim(sub$pixels), c(2L, 28L, 28L))
  expect_identical(sub$labels, factor(c("b", "a"), levels = c("b", "a")))
  expect_output(print(image_array(random_pixels(1))), "1 image of 28 x 28 pixels, RGB")
  expect_output(print(image_array(random_pixels(1))), "no labels")
  expect_identical(image_array(imgs)$labels, imgs$labels)
  # labels that are numbers become a factor
  expect_identical(image_array(px, labels = c(1, 0, 1, 0))$labels, factor(c(1, 0, 1, 0)))
})

test_that("the README's features-to-SVM lines run without a warning", {
  skip_if_not_installed("e1071")
  set.seed(3)
  px <- array(stats::runif(12 * 24 * 24 * 3, 0, 255), c(12, 24, 24, 3))
  px[7:12, , 1:12, ] <- px[7:12, , 1:12, ] / 4          # the second class is darker on the left
  x <- image_array(px, labels = rep(c("a", "b"), each = 6))
  f <- alexnet_features(shared_net(), x, layer = "convpool_5")
  expect_true(any(apply(f, 2, sd) == 0))                 # the columns svm() would warn about
  keep <- apply(f, 2, sd) > 0
  expect_no_warning(m <- e1071::svm(f[, keep], attr(f, "labels"), kernel = "linear"))
  expect_equal(length(predict(m, f[, keep])), 12L)
  # as accurate as the vignette's lines: svm() standardises each column with
  # the training images' mean and sd, as the vignette does by hand
  mu <- colMeans(f[, keep])
  sds <- apply(f[, keep], 2, sd)
  z <- sweep(sweep(f[, keep], 2, mu), 2, sds, "/")
  m2 <- e1071::svm(z, attr(f, "labels"), kernel = "linear", scale = FALSE)
  expect_identical(as.character(predict(m, f[, keep])), as.character(predict(m2, z)))
  expect_equal(m$tot.nSV, m2$tot.nSV)
})
