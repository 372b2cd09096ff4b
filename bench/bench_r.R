# bench_r.R: the package at the user's call, timed as bench_engine times the
# engine alone: alexnet_features() and predict() on an R array of 227 x 227
# RGB images (n = 4 batches per call), alexnet_train() for one epoch on an
# array (64 images). Median over calls until `budget` seconds have passed
# (3 untimed calls first, at least 3 timed).
# Usage: Rscript bench/bench_r.R [--batches 16,32,64] [--budget 4] [--threads 2]
# Prints: r <case> batch=B ips=X
suppressMessages(library(alexnet))
args <- commandArgs(TRUE)
opt <- function(name, default) {
  i <- match(paste0("--", name), args)
  if (is.na(i)) default else args[[i + 1L]]
}
batches <- as.integer(strsplit(opt("batches", "16,32,64"), ",")[[1]])
budget <- as.numeric(opt("budget", "4"))
alexnet_threads(as.integer(opt("threads", "2")))

timed <- function(f, images) {
  for (i in 1:3) f()
  t <- numeric()
  start <- proc.time()[["elapsed"]]
  while (length(t) < 3 || proc.time()[["elapsed"]] - start < budget) {
    t0 <- proc.time()[["elapsed"]]
    f()
    t <- c(t, proc.time()[["elapsed"]] - t0)
  }
  images / stats::median(t)
}

set.seed(1)
net <- alexnet(classes = 2, seed = 1, device = "cpu")
for (b in batches) {
  n <- 4L * b
  x <- array(floor(stats::runif(n * 227 * 227 * 3, 0, 256)), c(n, 227, 227, 3))
  ips <- timed(function() alexnet_features(net, x, layer = "convpool_5", batch_size = b), n)
  cat(sprintf("r features batch=%d ips=%.2f\n", b, ips))
  ips <- timed(function() predict(net, x, batch_size = b), n)
  cat(sprintf("r full batch=%d ips=%.2f\n", b, ips))
}
n <- 64L
x <- image_array(array(floor(stats::runif(n * 227 * 227 * 3, 0, 256)), c(n, 227, 227, 3)),
                 labels = rep(c("a", "b"), length.out = n))
net <- alexnet(labels = c("a", "b"), seed = 1, scale = 1 / 255, device = "cpu")
opt_sgd <- sgd(lr = 1e-5, momentum = 0.9, nesterov = TRUE)
ips <- timed(function() alexnet_train(net, x, epochs = 1, batch_size = 16, optimizer = opt_sgd,
                                      verbose = FALSE, seed = 1), n)
cat(sprintf("r train batch=16 ips=%.2f\n", ips))
