# bench_bf16_features.R: does bf16 change what the features are worth? The
# main job's experiment 3 (convpool_5 features of a pretrained net, then
# linear and RBF SVMs on the quick run's Pullover vs Coat images), with the
# same weights once in f32 and once in bf16: the SVMs' test accuracy, how
# many test predictions agree, and how far the features move.
# Usage: Rscript bench/bench_bf16_features.R pretrained.h5
#   (pretrained.h5: the dir of an alexnet_experiments() run)
suppressMessages(library(alexnet))
options(alexnet.verbose = FALSE)
file <- commandArgs(TRUE)[1]
s <- experiment_settings("quick")
train <- fashion_mnist("train", classes = s$classes, n_per_class = s$n_train, seed = s$seed)
test <- fashion_mnist("test", classes = s$classes, n_per_class = s$n_test, seed = s$seed)
features <- function(precision) {
  net <- alexnet(classes = 2, weights = file, scale = s$pretrain_scale, precision = precision)
  list(train = alexnet_features(net, train, batch_size = 32), test = alexnet_features(net, test, batch_size = 32))
}
svms <- function(f) {
  sds <- apply(f$train, 2L, stats::sd)
  keep <- which(sds > 1e-8)
  mu <- colMeans(f$train[, keep, drop = FALSE])
  st <- function(x) sweep(sweep(x[, keep, drop = FALSE], 2L, mu), 2L, sds[keep], "/")
  lapply(c(linear = "linear", rbf = "radial"), function(kernel) {
    m <- e1071::svm(st(f$train), train$labels, kernel = kernel, cost = s$svm_cost, scale = FALSE)
    stats::predict(m, st(f$test))
  })
}
f32 <- features("f32")
b16 <- features("bf16")
cat(sprintf("features: max |bf16 - f32| = %.2e of the largest value (train), %.2e (test)\n",
            max(abs(b16$train - f32$train)) / max(abs(f32$train)),
            max(abs(b16$test - f32$test)) / max(abs(f32$test))))
p32 <- svms(f32)
p16 <- svms(b16)
for (k in names(p32)) {
  cat(sprintf("SVM %-6s test accuracy: f32 %.1f%%, bf16 %.1f%%; predictions agree on %d of %d test images\n", k,
              100 * mean(p32[[k]] == test$labels), 100 * mean(p16[[k]] == test$labels),
              sum(p32[[k]] == p16[[k]]), length(test$labels)))
}
