# fashion_mnist(): the IDX reader on small files written here (always), and
# on Debian's dataset-fashion-mnist (skipped, visibly, when it is absent).
# The experiments: settings, and the results object's print, plot and files.

fmnist_dir <- "/usr/share/datasets/fashion-mnist"
have_fmnist <- function() {
  file.exists(file.path(fmnist_dir, c("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                                      "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")))
}
skip_if_no_fmnist <- function() {
  if (!all(have_fmnist())) {
    skip("Fashion-MNIST is not installed (Debian package dataset-fashion-mnist)")
  }
}

# Write a small IDX data set (gzip) of n images of rows x cols: image i has
# all pixels equal to (i - 1) %% 256, except pixel (1, 2) which is 255 (to
# check the orientation); labels `labels`.
write_idx_set <- function(dir, labels, rows = 4L, cols = 5L, prefix = "t10k",
                          image_magic = 2051L, label_magic = 2049L, truncate = 0L) {
  n <- length(labels)
  con <- gzfile(file.path(dir, paste0(prefix, "-labels-idx1-ubyte.gz")), "wb")
  writeBin(c(label_magic, n), con, size = 4L, endian = "big")
  writeBin(as.raw(labels), con)
  close(con)
  px <- unlist(lapply(seq_len(n), function(i) {
    img <- matrix((i - 1L) %% 256L, rows, cols)
    img[1L, 2L] <- 255L
    as.vector(t(img)) # row-major
  }))
  if (truncate > 0L) px <- px[seq_len(length(px) - truncate)]
  con <- gzfile(file.path(dir, paste0(prefix, "-images-idx3-ubyte.gz")), "wb")
  writeBin(c(image_magic, n, rows, cols), con, size = 4L, endian = "big")
  writeBin(as.raw(px), con)
  close(con)
  invisible(dir)
}

test_that("fashion_mnist() reads IDX files: sizes, orientation, labels", {
  dir <- local_test_dir()
  labels <- c(0, 1, 2, 9, 4, 0, 9, 4, 0, 1)
  write_idx_set(dir, labels, rows = 4L, cols = 5L)
  x <- fashion_mnist("test", path = dir)
  expect_s3_class(x, "image_array")
  expect_equal(dim(x$pixels), c(10L, 4L, 5L))
  expect_equal(levels(x$labels), fashion_mnist_classes())
  expect_equal(as.character(x$labels), fashion_mnist_classes()[labels + 1])
  expect_equal(x$pixels[3, 2, 1], 2)
  expect_equal(x$pixels[3, 1, 2], 255)
  expect_equal(x$pixels[3, 1, 1], 2)
  expect_equal(x$pixels[3, 4, 3], 2)
})

test_that("fashion_mnist() keeps classes in the order asked, by name or number", {
  dir <- local_test_dir()
  labels <- c(0, 1, 2, 9, 4, 0, 9, 4, 0, 1)
  write_idx_set(dir, labels)
  x <- fashion_mnist("test", classes = c("Coat", "T-shirt/top"), path = dir)
  expect_equal(levels(x$labels), c("Coat", "T-shirt/top"))
  expect_equal(as.character(x$labels), c("T-shirt/top", "Coat", "T-shirt/top", "Coat", "T-shirt/top"))
  # images stay in file order: items 1, 5, 6, 8, 9
  expect_equal(x$pixels[, 2, 2], c(0, 4, 5, 7, 8))
  y <- fashion_mnist("test", classes = c(4, 0), path = dir)
  expect_identical(y, x)
})

test_that("fashion_mnist() samples n_per_class deterministically", {
  dir <- local_test_dir()
  labels <- rep(c(2, 4), each = 10)
  write_idx_set(dir, labels)
  first <- fashion_mnist("test", n_per_class = 3, classes = c(2, 4), path = dir)
  expect_equal(first$pixels[, 2, 2], c(0, 1, 2, 10, 11, 12))
  a <- fashion_mnist("test", n_per_class = 3, classes = c(2, 4), path = dir, seed = 7)
  b <- fashion_mnist("test", n_per_class = 3, classes = c(2, 4), path = dir, seed = 7)
  expect_identical(a, b)
  expect_equal(as.vector(table(a$labels)), c(3, 3))
  c7 <- a$pixels[, 2, 2]
  expect_true(all(c7[1:3] %in% 0:9) && all(c7[4:6] %in% 10:19))
  others <- lapply(1:5, function(s) fashion_mnist("test", n_per_class = 3, classes = c(2, 4),
                                                   path = dir, seed = s)$pixels[, 2, 2])
  expect_true(any(vapply(others, function(o) !identical(o, c7), TRUE)))
  # the user's RNG is untouched
  set.seed(3)
  before <- runif(1)
  set.seed(3)
  fashion_mnist("test", n_per_class = 3, classes = c(2, 4), path = dir, seed = 7)
  expect_equal(runif(1), before)
})

test_that("fashion_mnist() reports missing, foreign and damaged files clearly", {
  dir <- local_test_dir()
  err <- expect_error(fashion_mnist("test", path = dir), class = "alexnet_error")
  expect_match(conditionMessage(err), "t10k-labels-idx1-ubyte.gz")
  expect_match(conditionMessage(err), "dataset-fashion-mnist")

  write_idx_set(dir, c(0, 1), image_magic = 2049L)
  err <- expect_error(fashion_mnist("test", path = dir), class = "alexnet_error")
  expect_match(conditionMessage(err), "t10k-images-idx3-ubyte.gz")
  expect_match(conditionMessage(err), "magic number")

  write_idx_set(dir, c(0, 1), truncate = 5L)
  err <- expect_error(fashion_mnist("test", path = dir), class = "alexnet_error")
  expect_match(conditionMessage(err), "truncated")

  write_idx_set(dir, c(0, 1))
  expect_error(fashion_mnist("test", classes = "Hat", path = dir), "Hat", class = "alexnet_error")
  expect_error(fashion_mnist("test", classes = 10, path = dir), class = "alexnet_error")
  expect_error(fashion_mnist("test", classes = c(1, 1), path = dir), class = "alexnet_error")
  expect_error(fashion_mnist("test", n_per_class = 5, path = dir), "fewer", class = "alexnet_error")
  expect_error(fashion_mnist("test", n_per_class = 0, path = dir), class = "alexnet_error")
  expect_error(fashion_mnist("validation", path = dir))
})

test_that("fashion_mnist() reads Debian's Fashion-MNIST", {
  skip_if_no_fmnist()
  x <- fashion_mnist("test")
  expect_equal(dim(x$pixels), c(10000L, 28L, 28L))
  expect_equal(as.vector(table(x$labels)), rep(1000L, 10))
  expect_equal(range(x$pixels), c(0, 255))
  # the first test image is an ankle boot (label 9)
  expect_equal(as.character(x$labels[1]), "Ankle boot")
  y <- fashion_mnist("train", classes = c("Pullover", "Coat"), n_per_class = 50, seed = 1)
  expect_equal(dim(y$pixels), c(100L, 28L, 28L))
  expect_equal(levels(y$labels), c("Pullover", "Coat"))
  expect_identical(y, fashion_mnist("train", classes = c("Pullover", "Coat"), n_per_class = 50, seed = 1))
})

test_that("experiment_settings() has the seed's full protocol and reduced presets", {
  full <- experiment_settings("full")
  expect_equal(full$n_train, 1000L)
  expect_equal(full$n_test, 400L)
  expect_equal(full$scratch_epochs, 80L)
  expect_equal(full$finetune_epochs, 10L)
  expect_equal(full$finetune_layers, c("dense_3", "dense_2", "dense_1", "conv_5", "conv_4",
                                       "conv_3", "conv_2", "conv_1"))
  # the seed's rates for the dense stages; the convolutions take 1e-4 with cross-entropy
  expect_equal(full$finetune_lr, c(0.01, 0.001, 0.001, rep(0.0001, 5)))
  expect_equal(full$batch_size, 16L)
  expect_equal(full$pretrain_classes, setdiff(fashion_mnist_classes(), c("Pullover", "Coat")))
  quick <- experiment_settings("quick")
  expect_lt(quick$n_train, full$n_train)
  expect_lt(quick$scratch_epochs, full$scratch_epochs)
  # the dense stages are cheap (frozen convolutions computed once): the seed's 10 epochs
  expect_equal(quick$finetune_epochs, c(10L, 10L, 10L, 1L, 1L, 1L, 1L, 1L))
  seedish <- experiment_settings("full", loss = "mse", scratch_lr = 0.01, scale = 1)
  expect_equal(seedish$loss, "mse")
  expect_equal(seedish$finetune_lr, c(0.01, rep(0.001, 7)))
  expect_equal(seedish$pretrain_scale, 1 / 255)
  expect_output(print(seedish), "the seed's settings")
  expect_output(print(quick), "full: 1000")
  s <- experiment_settings("quick", finetune_layers = c("dense_3", "conv_1"))
  expect_equal(s$finetune_lr, c(0.01, 0.0001))
  s <- experiment_settings("quick", finetune_lr = c(0.5, 0.25, 0.125, 0.1, 0.1, 0.1, 0.1, 0.1))
  expect_equal(s$finetune_lr[1:3], c(0.5, 0.25, 0.125))
  s <- experiment_settings("quick", classes = c("Shirt", "T-shirt/top"))
  expect_equal(length(s$pretrain_classes), 8L)
  expect_false(any(c("Shirt", "T-shirt/top") %in% s$pretrain_classes))
  expect_error(experiment_settings("quick", epochs = 3), "epochs", class = "alexnet_error")
  expect_error(experiment_settings("quick", n_train = 0), class = "alexnet_error")
  expect_error(experiment_settings("quick", classes = "Coat"), class = "alexnet_error")
  expect_error(experiment_settings("quick", finetune_layers = "conv_9"), class = "alexnet_error")
  expect_error(experiment_settings("quick", loss = "hinge"))
})

fake_results <- function() {
  h <- function(n, stage = NULL) {
    d <- data.frame(epoch = seq_len(n), loss = seq(0.7, 0.3, length.out = n),
                    accuracy = seq(0.55, 0.95, length.out = n), val_loss = seq(0.7, 0.4, length.out = n),
                    val_accuracy = seq(0.5, 0.85, length.out = n), lr = 0.001, seconds = 1)
    if (!is.null(stage)) d$stage <- stage
    d
  }
  s <- experiment_settings("quick")
  tab <- data.frame(experiment = c("1", "2", "3", "3", "3"),
                    method = c("from scratch, 4 epochs", "fine-tuning, 2 stages, 4 epochs",
                               "convpool_5 + linear SVM", "convpool_5 + RBF SVM",
                               "convpool_5 + 256-unit classifier"),
                    test_accuracy = c(0.8, 0.85, 0.82, 0.81, 0.83),
                    train_accuracy = c(0.9, 0.95, 1, 0.99, 1),
                    seed_accuracy = c(0.845, 0.89, NA, NA, 0.83), seconds = c(60, 70, 1, 1, 5))
  structure(list(table = tab,
                 histories = list(pretrain = h(2), scratch = h(4),
                                  finetune = h(4, rep(c("dense_3", "conv_1"), each = 2)),
                                  classifier = h(3)[, 1:5]),
                 settings = unclass(s),
                 data = list(name = "Fashion-MNIST", classes = c("Pullover", "Coat"), n_train = 200,
                             n_test = 100, description = "Fashion-MNIST Pullover vs Coat."),
                 timing = c(data = 1, total = 300),
                 run = list(date = "2024-01-01", size = "quick", machine = "test", backend = "cpu")),
            class = "alexnet_experiments")
}

test_that("the results print beside the seed's and plot to PNG files", {
  res <- fake_results()
  out <- capture.output(print(res))
  expect_true(any(grepl("84.5%", out, fixed = TRUE)))
  expect_true(any(grepl("89%", out, fixed = TRUE)))
  expect_true(any(grepl("83%", out, fixed = TRUE)))
  expect_true(any(grepl("not the seed's protocol", out, fixed = TRUE)))
  expect_true(any(grepl("RBF SVM", out, fixed = TRUE)))
  expect_equal(as.data.frame(res), res$table)
  dir <- local_test_dir()
  files <- plot(res, dir = dir)
  expect_equal(basename(files), c("accuracy.png", "scratch.png", "finetune.png"))
  expect_true(all(file.size(files) > 1000))
  expect_equal(readBin(files[1], "raw", 4), as.raw(c(0x89, 0x50, 0x4e, 0x47)))
  pdf(NULL)
  on.exit(dev.off(), add = TRUE)
  expect_identical(plot(res), res)
  expect_silent(plot(res, which = c("scratch", "finetune")))
  ht <- alexnet:::history_table(res)
  expect_setequal(unique(ht$run), c("pretrain", "scratch", "finetune", "classifier"))
})

test_that("the stored quick run is a complete results object", {
  file <- system.file("extdata", "experiments-quick.rds", package = "alexnet")
  skip_if(file == "", "no stored results in inst/extdata")
  res <- readRDS(file)
  expect_s3_class(res, "alexnet_experiments")
  expect_equal(nrow(res$table), 5L)
  expect_true(all(res$table$test_accuracy > 0.5))
  expect_match(res$run$command, "experiments")
  expect_output(print(res), "seed: dogs vs cats")
})

test_that("feature_classifier() learns a separable problem", {
  set.seed(1)
  x <- matrix(rnorm(200 * 20), 200)
  y <- factor(ifelse(x[, 1] + x[, 2] > 0, "a", "b"))
  fit <- feature_classifier(x[1:150, ], y[1:150], x[151:200, ], y[151:200],
                                    units = 16, epochs = 20, lr = 0.01, seed = 1)
  expect_gt(tail(fit$history$val_accuracy, 1), 0.85)
  again <- feature_classifier(x[1:150, ], y[1:150], x[151:200, ], y[151:200],
                                      units = 16, epochs = 20, lr = 0.01, seed = 1)
  expect_identical(fit, again)
})

test_that("alexnet_experiments() checks its arguments before any work", {
  expect_error(alexnet_experiments(data = "imagenet"))
  expect_error(alexnet_experiments(size = "huge"))
  expect_error(alexnet_experiments(weights = tempfile(fileext = ".h5"), dir = NULL, verbose = FALSE),
               "does not exist", class = "alexnet_error")
  expect_error(alexnet_experiments(dir = NULL, verbose = FALSE, n_epochs = 2), "n_epochs",
               class = "alexnet_error")
  # dogs vs cats: a clear error without image_folder() or without the seed's folders
  expect_error(alexnet_experiments(data = "dogs-vs-cats", dir = NULL, verbose = FALSE,
                                   data_path = tempfile()),
               "image_folder|does not exist", class = "alexnet_error")
})

test_that("a tiny run of the three experiments works end to end", {
  skip_on_cran()
  skip_if_no_fmnist()
  skip_if_not_installed("e1071")
  dir <- local_test_dir()
  res <- alexnet_experiments(size = "tiny", dir = dir, verbose = FALSE, n_train = 8L, n_test = 4L,
                             pretrain_n = 4L, pretrain_n_test = 2L, mlp_epochs = 2L)
  expect_s3_class(res, "alexnet_experiments")
  expect_equal(res$table$experiment, c("1", "2", "3", "3", "3"))
  expect_true(all(res$table$test_accuracy >= 0 & res$table$test_accuracy <= 1))
  expect_true(all(file.exists(file.path(dir, c("results.rds", "results.csv", "history.csv",
                                                "accuracy.png", "scratch.png", "finetune.png")))))
  expect_equal(nrow(res$histories$finetune), 2L)
  expect_true(file.exists(file.path(dir, "pretrained.h5")))
  release()
})
