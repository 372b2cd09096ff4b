# Weights files: save_weights(), load_weights(), weights_info() and
# alexnet(weights = ). Nets are ~230 MB and their files as large, so the file
# makes four nets and reuses them; parameters are compared by per-layer
# hashes (never by expect_identical() on the 57M-element vectors).

# 64-bit hashes of each Keras layer's weights and bias, named by layer (test-only entry)
digest <- function(net) .Call(alexnet:::C_test_weights_digest, net$ptr)
net_mean <- function(net) .Call(alexnet:::C_net_get_mean, net$ptr)
# HDF5 files without AlexNet's layers, written by the package's writer of
# small HDF5 files (scalars: root attributes, vectors and matrices: datasets)
write_hdf5 <- function(file, values) alexnet:::h5f_write(file, values)
weight_layers <- c("conv_1", "conv_2_1", "conv_2_2", "conv_3", "conv_4_1", "conv_4_2",
                   "conv_5_1", "conv_5_2", "dense_1", "dense_2", "dense_3")
tmp_files <- function(dir) list.files(dir, pattern = "\\.tmp-")

dir <- tempfile("weights-")
dir.create(dir)
file_a <- file.path(dir, "a.h5")      # own file of `a` (2 classes, UTF-8 label, own mean)
file_5 <- file.path(dir, "five.h5")   # own file of `src5` (5 classes)
keras_5 <- file.path(dir, "keras.h5") # Keras 1 file of `src5`

labels_a <- c("cat", "d\u00f6g")
a <- alexnet(classes = 2, seed = 11, labels = labels_a, mean = c(1, 2, 3))
src5 <- alexnet(classes = 5, seed = 12, scale = 1)   # the Keras 1 files' convention
px <- random_pixels(2, 32, 32, 3, seed = 7)

test_that("save_weights() writes a self-describing file that weights_info() reads", {
  expect_invisible(res <- save_weights(a, file_a, verbose = FALSE))
  expect_identical(res, file_a)
  expect_true(file.exists(file_a))
  expect_length(tmp_files(dir), 0L)

  info <- weights_info(file_a)
  expect_s3_class(info, "alexnet_weights_info")
  expect_identical(info$kind, "alexnet")
  expect_identical(info$format_version, 1L)
  expect_identical(info$classes, 2L)
  expect_identical(info$class_names, labels_a)
  expect_identical(Encoding(info$class_names[2]), "UTF-8")
  expect_equal(info$mean, c(1, 2, 3))
  expect_true(info$has_mean)
  expect_identical(info$layers, weight_layers)
  expect_output(print(info), "alexnet file, format version 1")
  expect_output(print(info), "classes: 2")
  expect_equal(info$input_scale, .Call(alexnet:::C_net_scale, a$ptr, NULL))
  expect_output(print(info), "input: \\(pixel - mean\\) \\* ")

  expect_message(save_weights(src5, file_5, verbose = TRUE), "five.h5")
  expect_identical(weights_info(file_5)$class_names, as.character(1:5))
})

test_that("alexnet(weights = ) restores parameters, labels and mean from its file", {
  b <- alexnet(weights = file_a, seed = 99)
  expect_identical(b$classes, 2L)
  expect_identical(b$labels, labels_a)
  expect_equal(net_mean(b), c(1, 2, 3))
  expect_true(identical(digest(b), digest(a)))
  expect_identical(alexnet_features(b, px, "convpool_5"), alexnet_features(a, px, "convpool_5"))
  expect_identical(predict(b, px), predict(a, px))

  rep <- attr(b, "weights_report")
  expect_s3_class(rep, "data.frame")
  expect_identical(rep$layer, weight_layers)
  expect_true(all(rep$status == "loaded"))
  expect_true(all(is.na(rep$file_shape)))
  expect_identical(attr(rep, "kind"), "alexnet")
  expect_true(attr(rep, "mean_loaded"))
})

test_that("by-name loading keeps the net's own dense_3 of another shape and says so", {
  b <- alexnet(weights = file_a, seed = 99)
  before <- digest(b)
  mean_before <- net_mean(b)

  # by_name = FALSE refuses the 5-class dense_3, and changes nothing
  expect_error(load_weights(b, file_5, by_name = FALSE, verbose = FALSE),
               "dense_3", class = "alexnet_error")
  expect_error(load_weights(b, file_5, by_name = FALSE, verbose = FALSE),
               "five.h5", fixed = TRUE, class = "alexnet_error")
  expect_true(identical(digest(b), before))
  expect_identical(net_mean(b), mean_before)

  expect_message(b2 <- load_weights(b, file_5, verbose = TRUE),
                 "Kept the net's own dense_3 W (2, 4096), b (2,): the file's is W (5, 4096), b (5,)",
                 fixed = TRUE)
  rep <- attr(b2, "weights_report")
  expect_identical(rep$status, c(rep("loaded", 10), "kept"))
  expect_identical(rep$file_shape[11], "W (5, 4096), b (5,)")
  expect_true(all(is.na(rep$file_shape[1:10])))
  after <- digest(b)
  expect_true(identical(after[1:10], digest(src5)[1:10]))
  expect_true(identical(after[["dense_3"]], before[["dense_3"]]))
  # the 5-class file's mean (ImageNet's) was loaded; dense_3 was not, so the labels stay
  expect_true(attr(rep, "mean_loaded"))
  expect_equal(net_mean(b), c(123.68, 116.779, 103.939), tolerance = 1e-6)
  expect_identical(b2$labels, labels_a)

  # back to a's weights, silently; a 2-class file's class names become the labels
  b$labels <- c("x", "y")
  b3 <- load_weights(b, file_a, verbose = FALSE)
  expect_true(identical(digest(b), digest(a)))
  expect_identical(b3$labels, labels_a)
  expect_equal(net_mean(b), c(1, 2, 3))
})

test_that("save_weights(format = \"keras1\") writes a Keras 1 file that loads back identical", {
  expect_invisible(res <- save_weights(src5, keras_5, format = "keras1", verbose = FALSE))
  expect_identical(res, keras_5)
  expect_length(tmp_files(dir), 0L)
  info <- weights_info(keras_5)
  expect_identical(info$kind, "keras1")
  expect_identical(info$backend, "theano")
  expect_identical(info$layers, weight_layers)
  expect_identical(info$classes, 5L)
  # same classes: every layer loads, bit for bit; no mean, labels or scale in the file
  k <- alexnet(weights = keras_5, seed = 99)
  rep <- attr(k, "weights_report")
  expect_identical(attr(rep, "kind"), "keras1")
  expect_identical(rep$status, rep("loaded", 11))
  expect_true(identical(digest(k), digest(src5)))
  expect_identical(alexnet_features(k, px, "dense_3"), alexnet_features(src5, px, "dense_3"))
  # Keras 1 weights bring their input convention, pixel - mean (scale 1),
  # unless the caller gives one
  scaled <- alexnet(classes = 5, seed = 1)
  expect_equal(.Call(C_net_scale, scaled$ptr, NULL), rep(1 / 255, 3), tolerance = 1e-7)
  expect_message(load_weights(scaled, keras_5, verbose = TRUE), "Input scale set to 1")
  expect_identical(.Call(C_net_scale, scaled$ptr, NULL), c(1, 1, 1))
  expect_identical(.Call(C_net_scale, k$ptr, NULL), c(1, 1, 1))
  given <- alexnet(weights = keras_5, scale = 1 / 255)
  expect_equal(.Call(C_net_scale, given$ptr, NULL), rep(1 / 255, 3), tolerance = 1e-7)
  rm(scaled, given)
  # the Keras shapes: a 2-class net keeps its own dense_3, the file's is (in, out)
  k2 <- alexnet(classes = 2, weights = keras_5, seed = 5)
  expect_identical(attr(k2, "weights_report")$file_shape[11], "W (4096, 5), b (5,)")
  expect_message(save_weights(src5, keras_5, format = "keras1", verbose = TRUE), "Keras 1")
  expect_error(save_weights(src5, keras_5, format = "keras2"), "keras1", class = "alexnet_error")
  expect_error(save_weights(src5, keras_5, format = NA_character_), "format", class = "alexnet_error")
  expect_error(save_weights(src5, file.path(dir, "no-such-dir", "k.h5"), format = "keras1"),
               "no-such-dir", class = "alexnet_error")
  rm(k, k2)
  release()
})

test_that("a Keras 1 (Theano) file is read with flipped kernels and transposed dense weights", {
  save_weights(src5, keras_5, format = "keras1", verbose = FALSE)
  info <- weights_info(keras_5)
  expect_identical(info$kind, "keras1")
  expect_identical(info$format_version, 0L)
  expect_identical(info$classes, 5L)
  expect_null(info$class_names)
  expect_false(info$has_mean)
  expect_identical(info$layers, weight_layers)
  expect_output(print(info), "Keras 1 file")

  k <- alexnet(classes = 2, weights = keras_5, seed = 5)
  rep <- attr(k, "weights_report")
  expect_identical(attr(rep, "kind"), "keras1")
  expect_identical(rep$status, c(rep("loaded", 10), "kept"))
  expect_identical(rep$file_shape[11], "W (4096, 5), b (5,)")
  expect_false(attr(rep, "mean_loaded"))
  expect_identical(k$labels, c("1", "2"))
  expect_equal(net_mean(k), c(123.68, 116.779, 103.939), tolerance = 1e-6)
  # the flip and the transpose undo the writer's: bit-identical layers, same features
  expect_true(identical(digest(k)[1:10], digest(src5)[1:10]))
  expect_equal(alexnet_features(k, px, "convpool_5"), alexnet_features(src5, px, "convpool_5"))
  expect_equal(alexnet_features(k, px, "dense_2"), alexnet_features(src5, px, "dense_2"))

  before <- digest(k)
  expect_error(load_weights(k, keras_5, by_name = FALSE, verbose = FALSE),
               "dense_3", class = "alexnet_error")
  expect_true(identical(digest(k), before))
  expect_message(load_weights(k, keras_5, verbose = TRUE), "a Keras 1 file")
  expect_true(identical(digest(k), before))
})

test_that("bad files are clear errors naming the file, and the net is unchanged", {
  net <- src5
  before <- digest(net)
  mean_before <- net_mean(net)
  check_bad <- function(file, pattern) {
    expect_error(load_weights(net, file, verbose = FALSE), basename(file), fixed = TRUE,
                 class = "alexnet_error")
    expect_error(load_weights(net, file, verbose = FALSE), pattern, class = "alexnet_error")
    expect_error(weights_info(file), basename(file), fixed = TRUE, class = "alexnet_error")
    expect_true(identical(digest(net), before))
    expect_identical(net_mean(net), mean_before)
  }

  check_bad(file.path(dir, "missing.h5"), "no such file")
  text <- file.path(dir, "text.h5")
  writeLines(c("not", "an", "HDF5 file"), text)
  check_bad(text, "not an HDF5 file")
  truncated <- file.path(dir, "truncated.h5")
  writeBin(readBin(file_a, "raw", n = file.size(file_a) %/% 2), truncated)
  check_bad(truncated, "truncated")
  unlink(truncated)
  empty <- file.path(dir, "empty.h5")
  write_hdf5(empty, list(data = c(1, 2, 3)))
  check_bad(empty, "no AlexNet weights")
  other <- file.path(dir, "other.h5")   # a Keras 1 file whose only layer is not AlexNet's
  write_hdf5(other, list(layer_names = "dense_a", dense_a_W = matrix(0, 3, 2), dense_a_b = c(0, 0)))
  check_bad(other, "none of AlexNet's layers")
  expect_error(load_weights(net, other, verbose = FALSE), "its layers: dense_a", class = "alexnet_error")

  # alexnet(weights = ) fails before making a net
  expect_error(alexnet(weights = text), "text.h5", fixed = TRUE, class = "alexnet_error")
  expect_error(load_weights(net, file_a, by_name = NA), "by_name", class = "alexnet_error")
  expect_error(load_weights(net, c(file_a, file_a)), "file", class = "alexnet_error")
  expect_error(save_weights(list(), file_a), "alexnet", class = "alexnet_error")
})

test_that("saving fails cleanly into a missing directory and replaces an existing file", {
  nowhere <- file.path(dir, "no-such-dir", "w.h5")
  expect_error(save_weights(a, nowhere, verbose = FALSE), "no-such-dir", class = "alexnet_error")
  expect_false(file.exists(dirname(nowhere)))
  expect_error(save_weights(a, dir, verbose = FALSE), "is a directory", class = "alexnet_error")
  expect_length(tmp_files(dir), 0L)

  target <- file.path(dir, "replace.h5")
  writeLines("old contents", target)
  save_weights(src5, target, verbose = FALSE)
  expect_identical(weights_info(target)$classes, 5L)
  save_weights(a, target, verbose = FALSE)
  expect_identical(weights_info(target)$classes, 2L)
  expect_length(tmp_files(dir), 0L)
})

unlink(dir, recursive = TRUE)
rm(a, src5)
release()

test_that("the input scale travels with the weights file", {
  net <- alexnet(classes = 2, seed = 3, scale = 1 / 255)
  file <- tempfile(fileext = ".h5")
  on.exit(unlink(file))
  save_weights(net, file, verbose = FALSE)
  expect_equal(.Call(alexnet:::C_net_scale, alexnet(weights = file)$ptr, NULL), rep(1 / 255, 3), tolerance = 1e-7)
  expect_equal(.Call(alexnet:::C_net_scale, alexnet(weights = file, scale = 0.5)$ptr, NULL), rep(0.5, 3))
})
