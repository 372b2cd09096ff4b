test_that("bad pixel arrays give clear errors", {
  net <- shared_net()
  x <- random_pixels(1)
  # wrong dimensions
  expect_error(alexnet_features(net, 1:10), "`x` has no dimensions", class = "alexnet_error")
  expect_error(alexnet_features(net, matrix(0, 28, 28)), "`x` has dim c\\(28, 28\\)",
               class = "alexnet_error")
  expect_error(alexnet_features(net, matrix(0, 28, 28)), "single grey image")
  expect_error(alexnet_features(net, array(0, c(1, 2, 2, 2, 2))), "dim c\\(1, 2, 2, 2, 2\\)",
               class = "alexnet_error")
  expect_error(alexnet_features(net, array(0, c(1, 28, 28, 4))), "has 4 channels",
               class = "alexnet_error")
  expect_error(alexnet_features(net, array(0, c(1, 3, 28, 28))), "Channels come last",
               class = "alexnet_error")
  expect_error(alexnet_features(net, array(0, c(0, 28, 28, 3))), "at least one image",
               class = "alexnet_error")
  expect_error(alexnet_features(net, array(0, c(1, 0, 28, 3))), "at least one image",
               class = "alexnet_error")
  # missing and non-finite values
  y <- random_pixels(3)
  y[2, 5, 5, 1] <- NA
  expect_error(alexnet_features(net, y), "missing or non-finite pixel \\(NA\\) in image 2",
               class = "alexnet_error")
  y[2, 5, 5, 1] <- NaN
  expect_error(alexnet_features(net, y), "non-finite pixel \\(NaN\\) in image 2",
               class = "alexnet_error")
  y[2, 5, 5, 1] <- 1
  y[3, 1, 1, 3] <- Inf
  expect_error(alexnet_features(net, y), "non-finite pixel \\(Inf\\) in image 3",
               class = "alexnet_error")
  yi <- array(1L, c(2, 4, 4))
  yi[2, 1, 1] <- NA
  expect_error(alexnet_features(net, yi), "in image 2", class = "alexnet_error")
  # at the input's size the values are checked as the engine copies them
  # (in blocks of 8 images): the same errors, found anywhere
  big <- array(100, c(11, 227, 227, 3))
  big[10, 200, 3, 2] <- NaN
  expect_error(alexnet_features(net, big, batch_size = 11), "non-finite pixel \\(NaN\\) in image 10",
               class = "alexnet_error")
  big[10, 200, 3, 2] <- 255.0001
  expect_error(predict(net, big), "from 100 to 255.0001: they must lie in 0..255", class = "alexnet_error")
  storage.mode(big) <- "integer"
  big[4, 1, 227, 3] <- NA
  expect_error(alexnet_features(net, big), "missing or non-finite pixel \\(NA\\) in image 4",
               class = "alexnet_error")
  # inputs that would be misread: one RGB image without its image dimension,
  # pixels outside 0..255, pixels on the 0..1 scale
  one_rgb <- array(stats::runif(30 * 40 * 3, 0, 255), c(30, 40, 3))
  expect_error(alexnet_features(net, one_rgb), "one RGB image without its image dimension",
               class = "alexnet_error")
  expect_equal(nrow(alexnet_features(net, array(one_rgb, c(1, dim(one_rgb))), "dense_3")), 1L)
  expect_error(alexnet_features(net, random_pixels(2) - 128), "from -12[0-9.]* to 12[0-9.]*: they must lie in 0..255",
               class = "alexnet_error")
  expect_error(predict(net, random_pixels(2) * 256), "must lie in 0..255", class = "alexnet_error")
  expect_error(image_array(array(65535L, c(1, 8, 8))), "must lie in 0..255", class = "alexnet_error")
  expect_warning(f01 <- alexnet_features(net, random_pixels(2) / 255, "dense_3"), "0..1 scale")
  expect_equal(dim(f01), c(2L, 2L))
  expect_no_warning(alexnet_features(net, array(0, c(1, 8, 8)), "dense_3"))   # all black is fine
  # non-numeric
  expect_error(alexnet_features(net, array("a", c(1, 28, 28, 3))), "numeric array of pixels, not of type character",
               class = "alexnet_error")
  expect_error(alexnet_features(net, array(TRUE, c(1, 28, 28, 3))), "not of type logical",
               class = "alexnet_error")
  expect_error(alexnet_features(net, array(1i, c(1, 28, 28, 3))), "not of type complex",
               class = "alexnet_error")
  expect_error(alexnet_features(net, data.frame(a = 1)), "not a data frame",
               class = "alexnet_error")
  expect_error(alexnet_features(net, list(1, 2)), "not of type list", class = "alexnet_error")
  expect_error(alexnet_features(net, NULL), "not of type NULL", class = "alexnet_error")
  expect_error(predict(net, array("a", c(1, 28, 28, 3))), "`newdata` must be a numeric array",
               class = "alexnet_error")
  expect_error(image_array(array(NA, c(1, 2, 2))), "`x` must be a numeric array",
               class = "alexnet_error")
})

test_that("unknown layer names list the valid ones", {
  net <- shared_net()
  x <- random_pixels(1)
  expect_error(alexnet_features(net, x, layer = "conv_9"),
               "`layer` is \"conv_9\", which is not a layer name", class = "alexnet_error")
  expect_error(alexnet_features(net, x, layer = "conv_9"), "convpool_5")
  expect_error(alexnet_features(net, x, layer = "conv_2_1"), "use \"conv_2\"",
               class = "alexnet_error")
  expect_error(alexnet_features(net, x, layer = c("conv_1", "conv_2")),
               "single layer name", class = "alexnet_error")
  expect_error(alexnet_features(net, x, layer = NA_character_), "single layer name",
               class = "alexnet_error")
  expect_error(alexnet_features(net, x, layer = 3), "single layer name",
               class = "alexnet_error")
})

test_that("bad batch sizes are refused", {
  net <- shared_net()
  x <- random_pixels(1)
  for (b in list(0, -1, NA, NA_integer_, 1.5, Inf, "2", c(1, 2), NULL)) {
    expect_error(alexnet_features(net, x, batch_size = b),
                 "`batch_size` must be a single whole number of at least 1",
                 class = "alexnet_error", label = deparse(b))
  }
  expect_error(predict(net, x, batch_size = 0), "`batch_size`", class = "alexnet_error")
})

test_that("bad arguments to alexnet() are refused", {
  expect_error(alexnet(classes = 0), "`classes` must be a single whole number of at least 1",
               class = "alexnet_error")
  expect_error(alexnet(classes = -3), "`classes`", class = "alexnet_error")
  expect_error(alexnet(classes = 2.5), "`classes`", class = "alexnet_error")
  expect_error(alexnet(classes = NA), "`classes`", class = "alexnet_error")
  expect_error(alexnet(classes = "2"), "`classes`", class = "alexnet_error")
  expect_error(alexnet(classes = 2, seed = -1), "`seed`", class = "alexnet_error")
  expect_error(alexnet(classes = 2, seed = 1.5), "`seed`", class = "alexnet_error")
  expect_error(alexnet(classes = 2, seed = NA), "`seed`", class = "alexnet_error")
  expect_error(alexnet(classes = 2, device = "cuda:x"), "`device` must be one of",
               class = "alexnet_error")
  expect_error(alexnet(classes = 2, device = c("cpu", "cuda")), "`device` must be one of",
               class = "alexnet_error")
  expect_error(alexnet(classes = 2, device = "tpu"), "`device` must be one of",
               class = "alexnet_error")
  expect_error(alexnet(classes = 2, mean = c(1, 2)), "`mean` must be 1 or 3 numbers within a pixel's range",
               class = "alexnet_error")
  expect_error(alexnet(classes = 2, mean = 1000), "0..255", class = "alexnet_error")
  expect_error(alexnet(classes = 2, scale = 1e-50), "`scale` is 1e-50: it must lie between",
               class = "alexnet_error")
  expect_error(alexnet(classes = 2, scale = 1e50), "`scale`", class = "alexnet_error")
  expect_error(alexnet(classes = 2, mean = c(-1, 0, 0)), "0..255", class = "alexnet_error")
  expect_error(alexnet(classes = 2, mean = c(1, NA, 3)), "`mean`", class = "alexnet_error")
  expect_error(alexnet(classes = 2, mean = "a"), "`mean`", class = "alexnet_error")
  expect_error(alexnet(classes = 2, labels = c("a", "b", "c")), "`labels` has 3 names but `classes` is 2",
               class = "alexnet_error")
  expect_error(alexnet(classes = 2, labels = c("a", "a")), "must be unique",
               class = "alexnet_error")
  expect_error(alexnet(classes = 2, labels = c("a", NA)), "missing or empty",
               class = "alexnet_error")
})

test_that("bad labels and other arguments are refused", {
  net <- shared_net()
  px <- random_pixels(3)
  expect_error(image_array(px, labels = c("a", "b")),
               "`labels` has 2 labels but there are 3 images", class = "alexnet_error")
  expect_error(image_array(px[1, , , , drop = FALSE], labels = c("a", "b")),
               "there is 1 image", class = "alexnet_error")
  expect_error(image_array(px, labels = c("a", NA, "b")), "missing values",
               class = "alexnet_error")
  expect_error(image_array(px, labels = list("a", "b", "c")), "vector or factor",
               class = "alexnet_error")
  expect_error(alexnet_features("net", px), "`net` must be an alexnet network",
               class = "alexnet_error")
  expect_error(alexnet_features(list(ptr = 1), px), "`net` must be an alexnet network",
               class = "alexnet_error")
  expect_error(predict(net), "`newdata` is missing", class = "alexnet_error")
  expect_error(predict(net, px, type = "response"), "`type` must be \"prob\" or \"class\"",
               class = "alexnet_error")
  expect_error(alexnet_threads(0), "`threads`", class = "alexnet_error")
  expect_error(alexnet_threads("a"), "`threads`", class = "alexnet_error")
  # a huge count used to overflow the C stack at the next computation
  expect_error(alexnet_threads(1e5), "threads is 100000: at most", class = "alexnet_error")
  expect_error(alexnet_threads(1e9), "threads is 1000000000: at most", class = "alexnet_error")
})

test_that("a FIFO named like a weights file or a JPEG is refused at once", {
  skip_on_os("windows")
  dir <- tempfile("fifo-")
  dir.create(file.path(dir, "a"), recursive = TRUE)
  on.exit(unlink(dir, recursive = TRUE))
  w <- file.path(dir, "w.h5")
  j <- file.path(dir, "a", "x.jpg")
  expect_equal(system2("mkfifo", c(shQuote(w), shQuote(j))), 0L)
  net <- shared_net()
  expect_error(load_weights(net, w, verbose = FALSE), "not a regular file", class = "alexnet_error")
  expect_error(weights_info(w), "not a regular file", class = "alexnet_error")
  expect_error(alexnet_features(net, image_folder(dir)), "not a regular file", class = "alexnet_error")
})

test_that("R survives all of that and still computes", {
  net <- shared_net()
  f <- alexnet_features(net, random_pixels(1), "dense_3")
  expect_identical(dim(f), c(1L, 2L))
  expect_true(all(is.finite(f)))
})

test_that("the C entry points defend themselves", {
  net <- shared_net()
  C <- function(name) get(name, envir = asNamespace("alexnet"))
  expect_error(.Call(C("C_loader_create_array"), 1:3, FALSE, 227L), "array with dim")
  expect_error(.Call(C("C_loader_create_array"), letters, FALSE, 227L), "double or integer array")
  expect_error(.Call(C("C_loader_create_array"), array(0, c(1, 2, 2, 5)), FALSE, 227L), "channels")
  expect_error(.Call(C("C_loader_create_array"), array(0, c(0, 2, 2)), FALSE, 227L), "at least one image")
  src <- .Call(C("C_loader_create_array"), random_pixels(2), FALSE, 227L)
  on.exit(.Call(C("C_loader_free"), src), add = TRUE)
  fwd <- function(ptr = net$ptr, index = 1:2, until = 0L, batch = 1L, loader = src) {
    .Call(C("C_loader_forward"), loader, ptr, index, until, batch, FALSE)
  }
  expect_error(fwd(ptr = "nope"), "not an alexnet network")
  expect_error(fwd(loader = net$ptr), "not an alexnet image loader")
  expect_error(fwd(until = 99L), "unknown layer")
  expect_error(fwd(batch = FALSE), "batch_size")
  expect_error(fwd(until = NA_integer_), "NA")
  expect_error(fwd(index = 3L), "outside 1..2")
  expect_error(fwd(index = c(1, 2)), "integer vector")
  expect_identical(dim(fwd()$value), c(2L, 96L * 55L * 55L))
  expect_error(.Call(C("C_test_forward_input"), net$ptr, c(1, 2, 3), FALSE), "227")
  expect_error(.Call(C("C_test_image_to_input"), random_pixels(2), 3L), "between 1 and 2")
  expect_error(.Call(C("C_net_set_params"), net$ptr, 1:3), "double")
  expect_error(.Call(C("C_net_create"), 0L, 1, c(0, 0, 0), "heuritech", TRUE), "at least 1")
  expect_error(.Call(C("C_net_create"), 2L, -1, c(0, 0, 0), "heuritech", TRUE), "seed")
  expect_error(.Call(C("C_net_set_mean"), net$ptr, c(1, 2)), "length 3")
  expect_equal(.Call(C("C_output_find"), net$ptr, "nope"), -1L)
  expect_error(.Call(C("C_net_create"), 2L, 1, c(0, 0, 0), "vgg", TRUE), "arch")
  expect_error(.Call(C("C_net_scale"), net$ptr, c(1, 2)), "1 or 3 numbers")
})
