# The data of the experiments (Fashion-MNIST or the seed's dogs-vs-cats
# folders) and the pretraining that stands in for the ImageNet weights.

# ---- data

experiment_data <- function(data, s, verbose, call = caller_env()) {
  if (data == "fashion-mnist") {
    train <- fashion_mnist("train", classes = s$classes, n_per_class = s$n_train, seed = s$seed)
    test <- fashion_mnist("test", classes = s$classes, n_per_class = s$n_test, seed = s$seed)
    desc <- sprintf("Fashion-MNIST %s vs %s: %d training and %d test images (28 x 28 grey, resized to the network's input, RGB).",
                    s$classes[1L], s$classes[2L], s$n_train * 2L, s$n_test * 2L)
    return(list(name = "Fashion-MNIST", classes = s$classes, n_train = s$n_train, n_test = s$n_test,
                train = train, test = test, features_train = train,
                train_labels = train$labels, test_labels = test$labels, description = desc))
  }
  dogs_vs_cats_data(s, verbose, call = call)
}

dogs_vs_cats_data <- function(s, verbose, call = caller_env()) {
  path <- s$data_path
  for (sub in c("Train", "Test")) {
    if (!dir.exists(file.path(path, sub))) {
      abort(c("The dogs-vs-cats folder {.file {file.path(path, sub)}} does not exist.",
              i = "Give the folder that holds the seed's {.file Train/cats}, {.file Train/dogs}, {.file Test/cats} and {.file Test/dogs} with {.code data_path = }."),
            call = call)
    }
  }
  aug <- if (isTRUE(s$augment)) image_augment(shear = 0.2, zoom = 0.2, flip = TRUE)
  train <- image_folder(file.path(path, "Train"), augment = aug)
  plain <- image_folder(file.path(path, "Train"))
  test <- image_folder(file.path(path, "Test"))
  pick <- function(x, n) {
    lab <- x$labels
    if (is.null(lab)) return(x)
    idx <- sort(unlist(lapply(levels(lab), function(l) utils::head(which(lab == l), n))))
    if (length(idx) == length(lab)) x else x[idx]
  }
  train <- pick(train, s$n_train)
  plain <- pick(plain, s$n_train)
  test <- pick(test, s$n_test)
  classes <- levels(train$labels)
  desc <- sprintf("Dogs vs cats from %s: %d training images (augmented: %s) and %d test images, classes %s.",
                  path, length(train$labels), if (isTRUE(s$augment)) "shear 0.2, zoom 0.2, flips" else "no",
                  length(test$labels), paste(classes, collapse = ", "))
  list(name = "dogs vs cats", classes = classes,
       n_train = as.integer(min(table(train$labels))), n_test = as.integer(min(table(test$labels))),
       train = train, test = test, features_train = plain,
       train_labels = train$labels, test_labels = test$labels, description = desc)
}

# ---- pretraining on the other Fashion-MNIST classes

pretrain <- function(s, dir, verbose) {
  key <- s[c("pretrain_classes", "pretrain_n", "pretrain_n_test", "pretrain_epochs", "pretrain_lr",
             "pretrain_scale", "batch_size", "momentum", "nesterov", "decay", "dropout", "seed", "precision")]
  file <- if (is.null(dir)) tempfile("pretrained-", fileext = ".h5") else file.path(dir, "pretrained.h5")
  meta_file <- sub("\\.h5$", ".rds", file)
  if (isTRUE(s$reuse_pretrained) && file.exists(file) && file.exists(meta_file)) {
    meta <- tryCatch(readRDS(meta_file), error = function(e) NULL)
    if (identical(meta$key, key)) {
      if (verbose) cli::cli_inform(c(v = "Reusing the pretrained weights {.file {file}} (same settings; delete it to pretrain again)."))
      return(list(file = file, history = meta$history))
    }
  }
  train <- fashion_mnist("train", classes = s$pretrain_classes, n_per_class = s$pretrain_n, seed = s$seed + 100)
  test <- fashion_mnist("test", classes = s$pretrain_classes, n_per_class = s$pretrain_n_test, seed = s$seed + 100)
  if (verbose) {
    cli::cli_inform("{length(s$pretrain_classes)} classes ({paste(s$pretrain_classes, collapse = ', ')}): {length(train$labels)} training, {length(test$labels)} validation images.")
  }
  net <- alexnet(labels = s$pretrain_classes, seed = s$seed + 100, scale = s$pretrain_scale,
                 precision = s$precision)
  fit <- alexnet_train(net, train, validation = test, epochs = s$pretrain_epochs,
                       batch_size = s$batch_size,
                       optimizer = sgd(lr = s$pretrain_lr, momentum = s$momentum,
                                       nesterov = s$nesterov, decay = s$decay),
                       loss = "cross_entropy", seed = s$seed + 100, dropout = s$dropout, verbose = verbose)
  save_weights(net, file, verbose = FALSE)
  saveRDS(list(key = key, history = fit$history), meta_file)
  if (verbose) {
    cli::cli_inform(c(v = "Pretrained: {length(s$pretrain_classes)}-class validation accuracy {pct(last(fit$history$val_accuracy))}; weights saved to {.file {file}}."))
  }
  history <- fit$history
  rm(net, fit)
  invisible(gc(verbose = FALSE))
  list(file = file, history = history)
}
