# bench_frozen.R: a fine-tuning stage with its frozen layers computed once
# (alexnet_train(frozen_once = TRUE), the default) against computed every
# epoch, at the user's call, on Fashion-MNIST images (Pullover vs Coat).
#   Rscript bench/bench_frozen.R [images per class] [epochs] [stages, e.g. dense_3,dense_1]
library(alexnet)
args <- commandArgs(trailingOnly = TRUE)
n <- if (length(args) > 0) as.integer(args[1]) else 200L
epochs <- if (length(args) > 1) as.integer(args[2]) else 3L
stages <- if (length(args) > 2) strsplit(args[3], ",")[[1]] else c("dense_3", "dense_2", "dense_1", "conv_5")
train <- fashion_mnist("train", classes = c("Pullover", "Coat"), n_per_class = n)
test <- fashion_mnist("test", classes = c("Pullover", "Coat"), n_per_class = n %/% 2)
cat(sprintf("machine: %s, %d threads; %d training + %d validation images, %d epochs, batch 16\n",
            sub("^model name\\s*:\\s*", "", grep("^model name", readLines("/proc/cpuinfo"), value = TRUE)[1]),
            alexnet_threads(), 2 * n, 2 * (n %/% 2), epochs))
# frozen rows in memory, and in a file in tempdir() (as when they exceed
# getOption("alexnet.frozen_memory"), by default half the free memory)
configs <- list(every = list(once = FALSE, memory = NULL), once = list(once = TRUE, memory = NULL),
                file = list(once = TRUE, memory = 0))
for (from in stages) {
  secs <- c()
  for (cf in configs) {
    op <- options(alexnet.frozen_memory = cf$memory)
    net <- alexnet(labels = c("Pullover", "Coat"), seed = 1)
    unfreeze(net, from = from)
    t <- system.time(fit <- alexnet_train(net, train, validation = test, epochs = epochs, batch_size = 16,
                                          seed = 1, verbose = FALSE, frozen_once = cf$once))
    secs <- c(secs, t[["elapsed"]])
    options(op)
    rm(net); invisible(gc())
  }
  cat(sprintf("stage from %-7s  every epoch %6.1f s  once %6.1f s (in a file %6.1f s)  speed-up %5.1fx  (rows of %s)\n",
              from, secs[1], secs[2], secs[3], secs[1] / secs[2], if (is.null(fit$frozen_once)) "-" else fit$frozen_once))
}
