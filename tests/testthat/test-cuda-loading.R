# The GPU backend (libs/alexnet_cuda.so) is a shared object of its own,
# loaded on the first use of a GPU and only where an NVIDIA driver is: the
# package and its CPU work map no CUDA library elsewhere. Each test runs in
# a new R process (run_child), whose maps nothing in this one has touched.

nvidia_driver <- function() any(file.exists(c("/dev/nvidiactl", "/proc/driver/nvidia/version", "/dev/dxg")))

# the child's code: cuda_maps() lists the CUDA libraries and backend files
# its /proc/self/maps holds
cuda_maps_code <- c(
  "cuda_maps <- function() {",
  "  files <- sub('^.* ', '', readLines('/proc/self/maps'))",
  "  unique(basename(grep('libcudart|libcublas|libcudnn|libnccl|alexnet_cuda', files, value = TRUE)))",
  "}",
  "images <- array(runif(2 * 28 * 28 * 3, 0, 255), c(2, 28, 28, 3))"
)

test_that("without an NVIDIA driver, library(alexnet) and CPU work map no CUDA library", {
  skip_if_not(on_linux_proc(), "no /proc: what a process maps cannot be seen")
  skip_if(nvidia_driver(), "an NVIDIA driver is installed: the GPU backend loads on the first use of a GPU")
  skip_if_no_installed_alexnet()
  res <- run_child(c(
    cuda_maps_code,
    "after_load <- cuda_maps()",
    "net <- alexnet(classes = 3, seed = 1, device = 'cpu')",
    "f <- alexnet_features(net, images)",
    "b <- alexnet_backend()",
    "libs <- basename(list.files(system.file('libs', package = 'alexnet'), recursive = TRUE))",
    "saveRDS(list(after_load = after_load, after_cpu = cuda_maps(), finite = all(is.finite(f)),",
    "             backend = unclass(b), libs = libs), result_file)"
  ))
  expect_identical(res$after_load, character())
  expect_identical(res$after_cpu, character())
  expect_true(res$finite)
  expect_identical(res$backend$device, "cpu")
  expect_length(res$backend$gpus, 0)
  if (res$backend$cuda_built) {
    # the build has a backend, installed beside alexnet.so, and says why it is unused
    expect_true("alexnet_cuda.so" %in% res$libs)
    expect_match(res$backend$cuda_why, "no NVIDIA driver")
  } else {
    expect_false("alexnet_cuda.so" %in% res$libs)
    expect_match(res$backend$cuda_why, "no GPU backend")
  }
})

test_that("AN_CUDA_LOAD_WITHOUT_DRIVER=1 loads the backend, and CUDA itself says why there is no GPU", {
  skip_if_not(on_linux_proc(), "no /proc: what a process maps cannot be seen")
  skip_if_not(alexnet_backend()$cuda_built, "this build of alexnet has no GPU backend")
  skip_if_no_installed_alexnet()
  withr::local_envvar(AN_CUDA_LOAD_WITHOUT_DRIVER = "1", ALEXNET_CUDA_BACKEND = NA)
  res <- run_child(c(
    cuda_maps_code,
    "b <- alexnet_backend()",
    "saveRDS(list(maps = cuda_maps(), backend = unclass(b)), result_file)"
  ))
  expect_true("alexnet_cuda.so" %in% res$maps)
  expect_true(any(grepl("^libcudart", res$maps)))
  if (!length(res$backend$gpus)) {
    expect_true(nzchar(res$backend$cuda_why))
    expect_false(grepl("did not load", res$backend$cuda_why))
  }
})

test_that("a GPU backend that does not load: the reason names the file, and the CPU works", {
  skip_if_not(alexnet_backend()$cuda_built, "this build of alexnet has no GPU backend")
  skip_if_no_installed_alexnet()
  missing <- file.path(tempdir(), "no-such-dir", "alexnet_cuda.so")
  withr::local_envvar(AN_CUDA_LOAD_WITHOUT_DRIVER = "1", ALEXNET_CUDA_BACKEND = missing)
  res <- run_child(c(
    cuda_maps_code,
    "said <- character()",
    "net <- withCallingHandlers(alexnet(classes = 3, seed = 1, device = 'cuda'),",
    "  message = function(m) { said <<- c(said, conditionMessage(m)); invokeRestart('muffleMessage') })",
    "f <- alexnet_features(net, images)",
    "saveRDS(list(why = alexnet_backend()$cuda_why, said = said, device = net$device,",
    "             finite = all(is.finite(f))), result_file)"
  ))
  expect_match(res$why, "did not load", fixed = TRUE)
  expect_match(res$why, missing, fixed = TRUE)
  said <- gsub("\\s+", " ", paste(res$said, collapse = " "))   # cli wraps lines
  expect_match(said, "runs on the CPU", fixed = TRUE)
  expect_match(said, "did not load", fixed = TRUE)
  expect_match(said, missing, fixed = TRUE)
  expect_identical(res$device, "cpu")
  expect_true(res$finite)
})
