test_that("the layer table has the Heuritech names and parameter counts", {
  net <- shared_net()
  tab <- alexnet_layer_table(net)
  expect_s3_class(tab, "data.frame")
  expect_identical(
    tab$name,
    c("conv_1", "pool_1", "convpool_1", "conv_2_1", "conv_2_2", "conv_2", "pool_2",
      "lrn_2", "conv_3", "conv_4_1", "conv_4_2", "conv_4", "conv_5_1", "conv_5_2",
      "conv_5", "convpool_5", "dense_1", "dense_2", "dense_3", "softmax")
  )
  params <- setNames(tab$params, tab$name)
  expect_equal(params[["conv_1"]], 34944)
  expect_equal(params[["conv_2_1"]], 153728)
  expect_equal(params[["conv_2_2"]], 153728)
  expect_equal(params[["conv_3"]], 885120)
  expect_equal(params[["conv_4_1"]], 331968)
  expect_equal(params[["conv_4_2"]], 331968)
  expect_equal(params[["conv_5_1"]], 221312)
  expect_equal(params[["conv_5_2"]], 221312)
  expect_equal(params[["dense_1"]], 37752832)
  expect_equal(params[["dense_2"]], 16781312)
  expect_equal(params[["dense_3"]], 8194)
  expect_equal(sum(tab$params), 56876418)
  expect_equal(net_param_count(net), 56876418)

  out <- setNames(tab$output, tab$name)
  expect_identical(out[["conv_1"]], "96x55x55")
  expect_identical(out[["convpool_1"]], "96x27x27")
  expect_identical(out[["conv_2_1"]], "128x27x27")
  expect_identical(out[["conv_2"]], "256x27x27")
  expect_identical(out[["lrn_2"]], "256x13x13")
  expect_identical(out[["conv_4"]], "384x13x13")
  expect_identical(out[["conv_5"]], "256x13x13")
  expect_identical(out[["convpool_5"]], "256x6x6")
  expect_identical(out[["dense_1"]], "4096")
  expect_identical(out[["softmax"]], "2")

  # the names usable as `layer` are exactly the engine's named outputs
  expect_identical(tab$name[tab$feature], alexnet_layers())
  expect_identical(.Call(alexnet:::C_net_outputs, net$ptr)$name, alexnet_layers())
  expect_identical(
    vapply(alexnet_layers(), function(l) .Call(alexnet:::C_output_find, net$ptr, l), 1L),
    setNames(seq_along(alexnet_layers()) - 1L, alexnet_layers())
  )
})

test_that("the parameter block matches the layer table", {
  net <- shared_net()
  p <- net_params(net)
  expect_type(p, "double")
  expect_length(p, 56876418)
  lay <- .Call(alexnet:::C_net_layers, net$ptr)
  expect_equal(sum(lay$weight_count + lay$bias_count), 56876418)
  # he_normal weights (sd = sqrt(2 / fan_in)), zero biases
  fan_in <- c(3 * 11 * 11, 48 * 5 * 5, 256 * 3 * 3, 192 * 3 * 3, 192 * 3 * 3, 9216, 4096, 4096)
  for (j in seq_along(lay$name)) {
    w <- p[lay$weight_offset[j] + seq_len(lay$weight_count[j])]
    b <- p[lay$bias_offset[j] + seq_len(lay$bias_count[j])]
    expect_equal(sd(w), sqrt(2 / fan_in[j]), tolerance = 0.05, label = lay$name[j])
    expect_true(all(b == 0), label = lay$name[j])
  }
})

test_that("printing shows the layer table and the totals", {
  net <- shared_net()
  out <- capture.output(print(net))
  text <- paste(out, collapse = "\n")
  expect_match(text, "56,876,418", fixed = TRUE)
  expect_match(text, "conv_2_1 +conv 5x5/1, pad 2, ReLU, group 1/2 +128x27x27 +153,728")
  expect_match(text, "conv_2_2 .* 153,728")
  expect_match(text, "conv_4_2 .* 331,968")
  expect_match(text, "conv_5_1 .* 221,312")
  expect_match(text, "dense_1 .* 37,752,832")
  expect_match(text, "cat, dog", fixed = TRUE)
  expect_match(text, "cpu", fixed = TRUE)
  capture.output(vis <- withVisible(print(net)))
  expect_false(vis$visible)
  expect_identical(vis$value, net)
})

test_that("1000 classes have 60,965,224 parameters and default labels", {
  net <- alexnet(seed = 1)
  expect_equal(net$classes, 1000L)
  expect_identical(net$labels, as.character(1:1000))
  expect_equal(net_param_count(net), 60965224)
  expect_equal(sum(alexnet_layer_table(net)$params), 60965224)
  expect_output(print(net), "60,965,224", fixed = TRUE)
  rm(net)
  release()
})

test_that("classes default to the number of labels", {
  net <- alexnet(labels = c("a", "b", "c"), seed = 3)
  expect_equal(net$classes, 3L)
  expect_equal(net_param_count(net), 56876418 + 4097)
  rm(net)
  release()
})

test_that("a NULL seed comes from R's random numbers", {
  set.seed(10)
  a <- alexnet(classes = 2)
  set.seed(10)
  b <- alexnet(classes = 2)
  expect_identical(a$seed, b$seed)
  expect_identical(net_params(a)[1:1000], net_params(b)[1:1000])
  rm(a, b)
  release()
})

test_that("parameters can be written and read back", {
  net <- shared_net()
  old <- net_params(net)
  on.exit(set_net_params(net, old))
  new <- old
  new[1:10] <- c(0.5, -0.25, 1, 2, 3, 4, 5, 6, 7, 8)
  set_net_params(net, new)
  expect_identical(net_params(net)[1:11], c(new[1:10], old[11]))
  expect_error(set_net_params(net, 1:3), "must have 56876418 elements", class = "alexnet_error")
  bad <- old
  bad[5] <- NA
  expect_error(set_net_params(net, bad), "finite", class = "alexnet_error")
})

test_that("the mean is set in the engine", {
  net <- shared_net()
  expect_equal(.Call(alexnet:::C_net_get_mean, net$ptr), c(123.68, 116.779, 103.939),
               tolerance = 1e-6)
  net0 <- alexnet(classes = 2, seed = 42, mean = 0)
  expect_equal(.Call(alexnet:::C_net_get_mean, net0$ptr), c(0, 0, 0))
  x <- random_pixels(1)
  expect_false(isTRUE(all.equal(alexnet_features(net, x, "conv_1"),
                                alexnet_features(net0, x, "conv_1"))))
  rm(net0)
  release()
})

test_that("backend and threads", {
  b <- alexnet_backend()
  expect_s3_class(b, "alexnet_backend")
  expect_true(b$device %in% c("cpu", "cuda:0"))
  expect_identical(b$device == "cuda:0", length(b$gpus) > 0)
  expect_match(b$cpu, "^cpu \\(oneDNN")
  expect_type(b$cuda_built, "logical")
  expect_output(print(b), "alexnet backends")
  n <- alexnet_threads()
  expect_true(is.numeric(n) && n >= 1)
  old <- alexnet_threads(1)
  expect_equal(old, n)
  expect_equal(alexnet_threads(), 1)
  alexnet_threads(n)
  expect_equal(alexnet_threads(), n)
})
