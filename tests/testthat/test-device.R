# Devices: choosing one, falling back to the CPU, moving a net. The checks
# that need a GPU skip, visibly, where there is none.

has_gpu <- function() length(alexnet_backend()$gpus) > 0

test_that("device names are checked and resolved", {
  expect_identical(alexnet:::check_device("cpu"), "cpu")
  expect_identical(alexnet:::check_device("CPU"), "cpu")
  expect_identical(alexnet:::check_device("auto"), if (has_gpu()) "cuda:0" else "cpu")
  expect_error(alexnet:::check_device("tpu"), "`device` must be one of", class = "alexnet_error")
  expect_error(alexnet:::check_device(NA_character_), "`device` must be one of", class = "alexnet_error")
  expect_error(alexnet:::check_device(1), "`device` must be one of", class = "alexnet_error")
})

test_that("asking for a GPU where there is none gives one message and the CPU", {
  skip_if(has_gpu(), "a GPU is present: the fallback cannot happen here")
  expect_message(net <- alexnet(classes = 2, seed = 1, device = "cuda"), "runs on the CPU",
                 class = "alexnet_device_fallback")
  expect_identical(net$device, "cpu")
  expect_message(alexnet_to(net, "cuda:1"), "runs on the CPU")
  expect_output(print(net), "device: cpu \\(oneDNN")
  x <- array(runif(2 * 40 * 40 * 3, 0, 255), c(2, 40, 40, 3))
  expect_identical(dim(alexnet_features(net, x)), c(2L, 9216L))
  release()
})

test_that("a net on the CPU stays there and works after alexnet_to()", {
  net <- alexnet(classes = 2, seed = 3, device = "cpu")
  x <- array(runif(2 * 40 * 40 * 3, 0, 255), c(2, 40, 40, 3))
  f1 <- alexnet_features(net, x)
  net <- alexnet_to(net, "cpu")
  expect_identical(net$device, "cpu")
  expect_true(identical(f1, alexnet_features(net, x)))
  release()
})

test_that("alexnet_to() moves the network itself: no reassignment needed", {
  net <- alexnet(classes = 2, seed = 4, device = "cpu")
  other <- net                                    # the same engine network
  expect_null(unclass(net)$device)                # no copy of the device to go stale
  res <- withVisible(alexnet_to(net, "cpu"))      # result not assigned
  expect_false(res$visible)
  expect_identical(res$value$ptr, net$ptr)
  expect_identical(net$device, "cpu")
  expect_identical(net[["device"]], "cpu")
  expect_identical(other$device, "cpu")
  expect_output(print(net), "device: cpu \\(oneDNN")
  # the other fields are the list's own
  expect_identical(net$labels, c("1", "2"))
  expect_identical(net[["classes"]], 2L)
  expect_error(net$device <- "cuda:0", "cannot be assigned", class = "alexnet_error")
  expect_error(net[["device"]] <- "cuda:0", "cannot be assigned", class = "alexnet_error")
  expect_identical(net$device, "cpu")
  net$labels <- c("a", "b")                       # other fields can still be set
  expect_identical(net$labels, c("a", "b"))
  # a serialized copy has no engine network, so no device
  expect_identical(unserialize(serialize(net, NULL))$device, NA_character_)
  release()
})

test_that("on a GPU: alexnet_to() without reassignment updates net$device and print()", {
  skip_if_not(has_gpu(), "no CUDA GPU on this machine")
  net <- alexnet(classes = 2, seed = 6, device = "cuda")
  other <- net
  expect_identical(net$device, "cuda:0")
  expect_output(print(net), "device: cuda:0 \\(")
  alexnet_to(net, "cpu")
  expect_identical(net$device, "cpu")
  expect_identical(other$device, "cpu")
  expect_output(print(net), "device: cpu \\(oneDNN")
  alexnet_to(other, "cuda:0")
  expect_identical(net$device, "cuda:0")
  expect_output(print(net), "device: cuda:0 \\(")
  release()
})

test_that("on a GPU: features and a training step agree with the CPU", {
  skip_if_not(has_gpu(), "no CUDA GPU on this machine")
  x <- array(runif(4 * 60 * 60 * 3, 0, 255), c(4, 60, 60, 3))
  cpu <- alexnet(classes = 2, seed = 5, device = "cpu", scale = 1 / 255)
  gpu <- alexnet(classes = 2, seed = 5, device = "cuda", scale = 1 / 255)
  expect_match(gpu$device, "^cuda:0$")
  f_cpu <- alexnet_features(cpu, x)
  f_gpu <- alexnet_features(gpu, x)
  expect_lt(sqrt(sum((f_gpu - f_cpu)^2) / sum(f_cpu^2)), 2e-2)   # TF32 convolutions
  back <- alexnet_to(gpu, "cpu")
  expect_identical(back$device, "cpu")
  expect_false(identical(.Call(alexnet:::C_net_get_params, back$ptr), NULL))
  release()
})
