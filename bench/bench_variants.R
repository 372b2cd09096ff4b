# bench_variants.R: the ImageNet variants (Caffe's and torchvision's
# AlexNet, alexnet(arch =)) at the user's call: alexnet_features() to
# convpool_5 on an R array of input-sized RGB images (4 batches of 32 per
# call) and alexnet_train() for one epoch of 128 images in batches of 16,
# in f32 and (where the CPU has AVX512_BF16) bf16. Median over calls until
# `budget` seconds have passed (2 untimed calls first, at least 3 timed).
# Usage: Rscript bench/bench_variants.R [--budget 3] [--threads 2]
# Prints: r <case>_<arch>[_bf16] batch=B ips=X
suppressMessages(library(alexnet))
# the shared options and timing policy, beside this script
source(file.path(dirname(sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE)[1])), "timing.R"))
budget <- as.numeric(opt("budget", "3"))
alexnet_threads(as.integer(opt("threads", "2")))
# cpu_bf16: why bf16 would not be native here, NA when it is
precisions <- if (is.na(alexnet_backend()$cpu_bf16)) c("f32", "bf16") else "f32"

set.seed(1)
for (arch in c("caffe", "torchvision")) {
  size <- alexnet:::arch_facts(arch)$input_size
  x <- array(floor(stats::runif(128 * size * size * 3, 0, 256)), c(128, size, size, 3))
  train <- image_array(x, labels = rep(c("a", "b"), length.out = 128))
  for (p in precisions) {
    suffix <- if (p == "bf16") "_bf16" else ""
    net <- alexnet(arch = arch, classes = 2, seed = 1, device = "cpu", precision = p)
    ips <- timed(function() alexnet_features(net, x, layer = "convpool_5", batch_size = 32), 128, budget, warmup = 2L)
    cat(sprintf("r features_%s%s batch=32 ips=%.2f\n", arch, suffix, ips))
    net <- alexnet(arch = arch, labels = c("a", "b"), seed = 1, device = "cpu", precision = p)
    sgd_opt <- sgd(lr = 1e-5, momentum = 0.9, nesterov = TRUE)
    ips <- timed(function() alexnet_train(net, train, epochs = 1, batch_size = 16, optimizer = sgd_opt,
                                          verbose = FALSE, seed = 1), 128, budget, warmup = 2L)
    cat(sprintf("r train_%s%s batch=16 ips=%.2f\n", arch, suffix, ips))
    rm(net)
    invisible(gc())
  }
}
