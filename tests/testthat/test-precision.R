# bf16: alexnet(precision =), alexnet_precision(), and what a bf16 net gives.
# The engine's own tests (tests/engine/test_bf16.c) hold its arithmetic to
# PyTorch's; these check what a user sees from R.

bf16_native <- function() is.na(alexnet_backend()$cpu_bf16)

skip_without_bf16 <- function() {
  if (!bf16_native()) skip(paste("this CPU runs no bf16:", alexnet_backend()$cpu_bf16))
}

test_that("precision is f32 by default, read from the engine, and not assignable", {
  net <- alexnet(classes = 2, seed = 1)
  expect_identical(net$precision, "f32")
  expect_identical(net[["precision"]], "f32")
  expect_identical(alexnet_precision(net), "f32")
  expect_error(net$precision <- "bf16", "alexnet_precision", class = "alexnet_error")
  expect_error(net[["precision"]] <- "bf16", "alexnet_precision", class = "alexnet_error")
  expect_error(alexnet(classes = 2, precision = "fp16"), "precision", class = "alexnet_error")
  expect_error(alexnet_precision(net, NA_character_), "precision", class = "alexnet_error")
  expect_error(alexnet_precision(net, c("f32", "bf16")), "precision", class = "alexnet_error")
  expect_error(alexnet_precision(net, 16), "precision", class = "alexnet_error")
  b <- alexnet_backend()
  expect_true(is.character(b$cpu_bf16) && length(b$cpu_bf16) == 1L)
  expect_output(print(b), "bf16: ")
})

test_that("where the CPU lacks bf16, asking for it gives one message and f32", {
  .Call(C_test_hide_bf16, TRUE)
  withr::defer(.Call(C_test_hide_bf16, FALSE))
  expect_false(bf16_native())
  expect_message(net <- alexnet(classes = 2, seed = 1, precision = "bf16"), "AVX512_BF16",
                 class = "alexnet_precision_fallback")
  expect_identical(net$precision, "f32")
  expect_message(alexnet_precision(net, "bf16"), "computes in \"f32\"", class = "alexnet_precision_fallback")
  expect_identical(net$precision, "f32")
  expect_output(print(alexnet_backend()), "bf16: no \\(this CPU has no AVX512_BF16")
})

test_that("bf16 features are close to f32's, by arrays and files alike", {
  skip_without_bf16()
  net <- alexnet(classes = 2, seed = 3, precision = "bf16")
  expect_identical(net$precision, "bf16")
  expect_output(print(net), "precision: bf16")
  x <- random_pixels(n = 4, h = 227, w = 227, seed = 2)
  f16 <- alexnet_features(net, x)
  expect_identical(alexnet_precision(net, "f32"), net)
  f32 <- alexnet_features(net, x)
  err <- max(abs(f16 - f32)) / max(abs(f32))
  expect_gt(err, 0)        # it really computed in bf16
  expect_lt(err, 2e-2)     # measured ~5e-3, as PyTorch's bf16 autocast
  # the same pixels from a JPEG file give the same bf16 features as the array
  alexnet_precision(net, "bf16")
  path <- withr::local_tempfile(fileext = ".jpg")
  .Call(C_test_write_jpeg, path, array(as.integer(x[1, , , ]), c(227, 227, 3)), 95L)
  px <- read_jpeg(path)
  from_file <- alexnet_features(net, path)
  from_array <- alexnet_features(net, array(px, c(1, dim(px))))
  expect_identical(from_file, from_array)
})

test_that("a bf16 net trains, saves its f32 master weights, and moves", {
  skip_without_bf16()
  train <- stripes(32, 1)
  test <- stripes(16, 2)
  net <- alexnet(labels = c("h", "v"), seed = 1, precision = "bf16")
  fit <- alexnet_train(net, train, validation = test, epochs = 3, batch_size = 16,
                       optimizer = sgd(lr = 1e-3), seed = 1)
  expect_lt(fit$history$loss[3], fit$history$loss[1])
  expect_gte(fit$history$val_accuracy[3], 0.9)
  expect_identical(net$precision, "bf16")
  # the file holds the f32 parameters themselves, not bf16-rounded ones
  path <- withr::local_tempfile(fileext = ".h5")
  save_weights(net, path)
  back <- alexnet(weights = path)
  expect_identical(back$precision, "f32")
  expect_identical(.Call(C_test_weights_digest, back$ptr), .Call(C_test_weights_digest, net$ptr))
  # moving to the CPU it is on keeps the precision
  alexnet_to(net, "cpu")
  expect_identical(net$precision, "bf16")
})
