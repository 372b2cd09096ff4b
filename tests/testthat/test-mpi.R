# Data-parallel training: two MPI ranks against one process. Needs the
# package built with MPI and Open MPI's mpirun; skips, saying why, without.

mpi_ready <- function() {
  if (!isTRUE(.Call(alexnet:::C_mpi_built))) return("this build of alexnet has no MPI")
  if (!nzchar(Sys.which("mpirun"))) return("no mpirun on the PATH")
  ""
}

# Trains the same small problem; `ranks` 0 means in this process.
train_script <- function(out) {
  sprintf('
library(alexnet)
group <- if (nzchar(Sys.getenv("OMPI_COMM_WORLD_SIZE"))) alexnet_mpi()
alexnet_threads(1)
set.seed(1)
px <- array(runif(11 * 24 * 24, 0, 255), c(11, 24, 24))
imgs <- image_array(px, labels = rep(c("a", "b"), length.out = 11))
rank <- if (is.null(group)) 0L else group$rank
# each rank makes its own weights: training starts from rank 0\'s
net <- alexnet(labels = c("a", "b"), seed = 3 + rank, scale = 1 / 255, device = "cpu")
fit <- alexnet_train(net, imgs, epochs = 2, batch_size = 5, optimizer = sgd(lr = 1e-3),
                     seed = 7, verbose = FALSE, group = group)
saveRDS(list(history = fit$history[, c("loss", "accuracy")],
             params = .Call(alexnet:::C_net_get_params, net$ptr),
             local_rank = if (is.null(group)) 0L else group$local_rank,
             gpu = if (is.null(group)) -1L else group$gpu,
             auto = alexnet(classes = 2, seed = 1)$device),
        sprintf("%%s-%%d.rds", "%s", rank))
', out)
}

test_that("two MPI ranks train as one process does (batches of 5, 5 and 1)", {
  why <- mpi_ready()
  skip_if(nzchar(why), why)
  dir <- tempfile("mpi")
  dir.create(dir)
  on.exit(unlink(dir, recursive = TRUE), add = TRUE)
  script <- file.path(dir, "train.R")
  writeLines(train_script(file.path(dir, "out")), script)
  rscript <- file.path(R.home("bin"), "Rscript")
  lib <- paste(.libPaths(), collapse = ":")
  env <- c(paste0("R_LIBS=", lib), "OMPI_ALLOW_RUN_AS_ROOT=1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1",
           "OMP_NUM_THREADS=1")
  one <- system2(rscript, c("--vanilla", script), env = env[1], stdout = TRUE, stderr = TRUE)
  expect_true(file.exists(file.path(dir, "out-0.rds")), label = paste(one, collapse = "\n"))
  single <- readRDS(file.path(dir, "out-0.rds"))
  file.remove(file.path(dir, "out-0.rds"))
  log <- suppressWarnings(system2("mpirun", c("-np", "2", "--oversubscribe", "--bind-to", "none", "--mca", "mpi_yield_when_idle", "1",
                                              "-x", "R_LIBS", rscript, "--vanilla", script),
                                  env = env, stdout = TRUE, stderr = TRUE))
  expect_null(attr(log, "status"), label = paste(log, collapse = "\n"))
  r0 <- readRDS(file.path(dir, "out-0.rds"))
  r1 <- readRDS(file.path(dir, "out-1.rds"))
  # the ranks agree bit for bit, and their history is one process's
  expect_true(identical(r0$params, r1$params))
  expect_true(identical(r0$history, r1$history))
  # both ranks run on this machine: local ranks 0 and 1; no GPU here, so
  # device = "auto" is the CPU for both
  expect_identical(c(r0$local_rank, r1$local_rank), 0:1)
  gpus <- length(.Call(alexnet:::C_cuda_info)$devices)
  expect_identical(c(r0$gpu, r1$gpu), if (gpus > 0) 0:1 %% gpus else c(-1L, -1L))
  expect_identical(c(r0$auto, r1$auto), if (gpus > 0) sprintf("cuda:%d", 0:1 %% gpus) else c("cpu", "cpu"))
  expect_equal(r0$history$loss, single$history$loss, tolerance = 1e-5)
  expect_identical(r0$history$accuracy, single$history$accuracy)
  # and so are the weights, up to the order of sums (see test_mpi.c)
  p0 <- alexnet(labels = c("a", "b"), seed = 3, scale = 1 / 255, device = "cpu")
  start <- .Call(alexnet:::C_net_get_params, p0$ptr)
  d_mpi <- r0$params - start
  d_one <- single$params - start
  expect_lt(sqrt(sum((d_mpi - d_one)^2) / sum(d_one^2)), 1e-2)
  release()
})
