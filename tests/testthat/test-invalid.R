test_that("a network that went through serialization is reported invalid", {
  net <- shared_net()
  copy <- unserialize(serialize(net, NULL))
  expect_s3_class(copy, "alexnet")
  expect_false(.Call(alexnet:::C_net_valid, copy$ptr))
  x <- random_pixels(1)
  expect_error(alexnet_features(copy, x), "save_weights",
               class = "alexnet_error")
  expect_error(alexnet_features(copy, x), "no longer valid \\(saved and reloaded\\?\\)",
               class = "alexnet_error")
  expect_error(predict(copy, x), "no longer valid", class = "alexnet_error")
  expect_error(alexnet_layer_table(copy), "no longer valid", class = "alexnet_error")
  expect_output(print(copy), "invalid network")
  # the C side refuses it too
  src <- .Call(alexnet:::C_loader_create_array, x, FALSE, 227L)
  expect_error(.Call(alexnet:::C_loader_forward, src, copy$ptr, 1L, 0L, 1L, FALSE),
               "no longer valid \\(saved and reloaded\\?\\)")
  .Call(alexnet:::C_loader_free, src)
  expect_error(.Call(alexnet:::C_net_get_params, copy$ptr), "no longer valid")
  # and the original still works
  expect_identical(dim(alexnet_features(net, x, "dense_3")), c(1L, 2L))
})

test_that("saveRDS and readRDS give an invalid network, not a crash", {
  net <- shared_net()
  path <- tempfile(fileext = ".rds")
  on.exit(unlink(path))
  saveRDS(net, path)
  back <- readRDS(path)
  expect_error(predict(back, random_pixels(1)), "no longer valid", class = "alexnet_error")
})

test_that("freeing a network early is safe", {
  net <- alexnet(classes = 2, seed = 5)
  .Call(alexnet:::C_net_free, net$ptr)
  expect_error(alexnet_features(net, random_pixels(1)), "no longer valid",
               class = "alexnet_error")
  .Call(alexnet:::C_net_free, net$ptr)  # twice is harmless
  rm(net)
  release()                              # the finalizer sees NULL
})
