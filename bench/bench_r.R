# bench_r.R: the package at the user's call, timed as bench_engine times the
# engine alone: alexnet_features() and predict() on an R array of 227 x 227
# RGB images (n = 4 batches per call), alexnet_train() for one epoch on an
# array (128 images, batches of 16 and 64); then the same on a folder of 128 photo-sized JPEGs
# (500 x 375, decoded and resized by the engine's loader). Median over calls
# until `budget` seconds have passed (3 untimed calls first, at least 3 timed).
# With --precision bf16 the nets are alexnet(precision = "bf16") and the cases
# carry "_bf16".
# Usage: Rscript bench/bench_r.R [--batches 16,32,64] [--budget 4] [--threads 2]
#          [--precision f32|bf16] [--cases arrays,train,folders]
# Prints: r <case> batch=B ips=X
suppressMessages(library(alexnet))
# the shared options and timing policy, beside this script
source(file.path(dirname(sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE)[1])), "timing.R"))
batches <- as.integer(strsplit(opt("batches", "16,32,64"), ",")[[1]])
budget <- as.numeric(opt("budget", "4"))
alexnet_threads(as.integer(opt("threads", "2")))
precision <- opt("precision", "f32")
suffix <- if (precision == "bf16") "_bf16" else ""
cases <- strsplit(opt("cases", "arrays,train,folders"), ",")[[1]]

set.seed(1)
net <- alexnet(classes = 2, seed = 1, device = "cpu", precision = precision)
for (b in if ("arrays" %in% cases) batches) {
  n <- 4L * b
  x <- array(floor(stats::runif(n * 227 * 227 * 3, 0, 256)), c(n, 227, 227, 3))
  ips <- timed(function() alexnet_features(net, x, layer = "convpool_5", batch_size = b), n, budget)
  cat(sprintf("r features%s batch=%d ips=%.2f\n", suffix, b, ips))
  ips <- timed(function() predict(net, x, batch_size = b), n, budget)
  cat(sprintf("r full%s batch=%d ips=%.2f\n", suffix, b, ips))
}
n <- 128L
x <- image_array(array(floor(stats::runif(n * 227 * 227 * 3, 0, 256)), c(n, 227, 227, 3)),
                 labels = rep(c("a", "b"), length.out = n))
net <- alexnet(labels = c("a", "b"), seed = 1, scale = 1 / 255, device = "cpu", precision = precision)
opt_sgd <- sgd(lr = 1e-5, momentum = 0.9, nesterov = TRUE)
for (b in if ("train" %in% cases) c(16L, 64L)) {
  ips <- timed(function() alexnet_train(net, x, epochs = 1, batch_size = b, optimizer = opt_sgd,
                                        verbose = FALSE, seed = 1), n, budget)
  cat(sprintf("r train%s batch=%d ips=%.2f\n", suffix, b, ips))
}

if (!"folders" %in% cases) quit(save = "no")
# a folder of JPEGs like photos (500 x 375, smooth with some noise, quality 90)
dir <- file.path(tempdir(), "bench-photos")
for (cl in c("a", "b")) dir.create(file.path(dir, cl), recursive = TRUE, showWarnings = FALSE)
n <- 128L
yy <- seq(0, 3, length.out = 375)
xx <- seq(0, 4, length.out = 500)
for (i in seq_len(n)) {
  base <- outer(sin(yy + i), cos(xx * (1 + i %% 3)))
  img <- array(0L, c(375, 500, 3))
  for (ch in 1:3) {
    v <- 128 + 90 * base * (0.6 + 0.2 * ch) + stats::rnorm(375 * 500, 0, 12)
    img[, , ch] <- as.integer(pmin(pmax(round(v), 0), 255))
  }
  .Call(alexnet:::C_test_write_jpeg, file.path(dir, c("a", "b")[i %% 2 + 1], sprintf("%03d.jpg", i)),
        img, 90L)
}
folder <- image_folder(dir)
net <- alexnet(classes = 2, seed = 1, device = "cpu", precision = precision)
ips <- timed(function() alexnet_features(net, folder, layer = "convpool_5", batch_size = 32), n, budget)
cat(sprintf("r features_folder%s batch=32 ips=%.2f\n", suffix, ips))
net <- alexnet(labels = c("a", "b"), seed = 1, scale = 1 / 255, device = "cpu", precision = precision)
ips <- timed(function() alexnet_train(net, folder, epochs = 1, batch_size = 16, optimizer = opt_sgd,
                                      verbose = FALSE, seed = 1), n, budget)
cat(sprintf("r train_folder%s batch=16 ips=%.2f\n", suffix, ips))
unlink(dir, recursive = TRUE)
