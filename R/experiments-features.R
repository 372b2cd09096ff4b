# Experiment 3 of alexnet_experiments(): convpool_5 features into an SVM and
# into the seed's small classifier, feature_classifier().

extract_features <- function(net, d, s, verbose) {
  t0 <- proc.time()[["elapsed"]]
  ftr <- alexnet_features(net, d$features_train, layer = "convpool_5", batch_size = 32)
  fte <- alexnet_features(net, d$test, layer = "convpool_5", batch_size = 32)
  if (verbose) {
    cli::cli_inform("convpool_5 features: {nrow(ftr)} + {nrow(fte)} images x {ncol(ftr)} in {fmt_time(proc.time()[['elapsed']] - t0)}.")
  }
  # standardise with the training images' statistics; drop constant columns
  sds <- apply(ftr, 2L, stats::sd)
  keep <- which(sds > 1e-8)
  mu <- colMeans(ftr[, keep, drop = FALSE])
  st <- function(f) sweep(sweep(f[, keep, drop = FALSE], 2L, mu), 2L, sds[keep], "/")
  list(train = st(ftr), test = st(fte))
}

#' A small classifier on features
#'
#' The seed's classifier on top of the `convpool_5` features: a dense layer
#' of `units` ReLU units, dropout, a dense layer with one unit per class and
#' a softmax, trained with cross-entropy and Adam (beta 0.9, 0.999) in
#' mini-batches. Plain R (matrix products): fast enough for a few thousand
#' images of some thousand features.
#'
#' Standardise the features first (for example with the means and standard
#' deviations of the training features), as [alexnet_experiments()] does.
#'
#' @param x,x_test Numeric matrices of features, one row per image: the
#'   training and the test images.
#' @param y,y_test Their labels (factors with the same levels).
#' @param units Units of the hidden layer.
#' @param epochs Passes over `x`.
#' @param lr Adam's learning rate.
#' @param batch_size Images per step.
#' @param dropout Dropout rate after the hidden layer while training.
#' @param seed Seed of the initial weights, the order of the images and the
#'   dropout masks (R's generator is restored afterwards); `NULL` uses R's
#'   random number generator as it is.
#' @return A list with `history` (a data frame with one row per epoch:
#'   `epoch`, `loss`, `accuracy`, `val_loss`, `val_accuracy`, the last two
#'   on the test images) and `predicted` (the predicted classes of
#'   `x_test`, a factor).
#' @seealso [alexnet_features()], [alexnet_experiments()]
#' @export
#' @examples
#' set.seed(1)
#' x <- matrix(rnorm(300 * 20), 300)
#' y <- factor(ifelse(x[, 1] - x[, 2] > 0, "a", "b"))
#' fit <- feature_classifier(x[1:200, ], y[1:200], x[201:300, ], y[201:300],
#'                           units = 32, epochs = 10, lr = 0.01)
#' tail(fit$history, 3)
#' table(fit$predicted, y[201:300])
feature_classifier <- function(x, y, x_test, y_test, units = 256L, epochs = 30L, lr = 1e-4,
                               batch_size = 16L, dropout = 0.5, seed = 1) {
  if (!is.matrix(x) || !is.numeric(x) || !is.matrix(x_test) || !is.numeric(x_test) ||
      ncol(x) != ncol(x_test)) {
    abort("{.arg x} and {.arg x_test} must be numeric matrices with the same columns.")
  }
  if (!is.factor(y) || length(y) != nrow(x) || !is.factor(y_test) || length(y_test) != nrow(x_test) ||
      !identical(levels(y), levels(y_test))) {
    abort("{.arg y} and {.arg y_test} must be factors with one label per row and the same levels.")
  }
  units <- check_count(units)
  epochs <- check_count(epochs)
  batch_size <- check_count(batch_size)
  check_number(lr, min = 0, open_min = TRUE)
  check_number(dropout, min = 0, max = 1, open_max = TRUE)
  if (!is.null(seed)) seed <- check_seed(seed)
  with_seed(seed, {
    k <- nlevels(y)
    yi <- as.integer(y)
    Y <- diag(k)[yi, , drop = FALSE]
    p <- ncol(x)
    params <- list(W1 = matrix(stats::rnorm(p * units, sd = sqrt(2 / p)), p, units),
                   b1 = numeric(units),
                   W2 = matrix(stats::rnorm(units * k, sd = sqrt(2 / units)), units, k),
                   b2 = numeric(k))
    m <- lapply(params, function(v) v * 0)
    v <- m
    t <- 0
    softmax <- function(z) { z <- z - apply(z, 1L, max); e <- exp(z); e / rowSums(e) }
    predict_p <- function(xx) {
      h <- pmax(sweep(xx %*% params$W1, 2L, params$b1, "+"), 0)
      softmax(sweep(h %*% params$W2, 2L, params$b2, "+"))
    }
    evaluate <- function(xx, yy) {
      pr <- predict_p(xx)
      c(loss = -mean(log(pmax(pr[cbind(seq_along(yy), as.integer(yy))], 1e-12))),
        accuracy = mean(max.col(pr, ties.method = "first") == as.integer(yy)))
    }
    history <- data.frame()
    n <- nrow(x)
    for (epoch in seq_len(epochs)) {
      order <- sample.int(n)
      for (s in seq(1L, n, by = batch_size)) {
        idx <- order[s:min(s + batch_size - 1L, n)]
        xb <- x[idx, , drop = FALSE]
        a <- sweep(xb %*% params$W1, 2L, params$b1, "+")
        mask <- (matrix(stats::runif(length(a)), nrow(a)) >= dropout) / (1 - dropout)
        h <- pmax(a, 0) * mask
        pr <- softmax(sweep(h %*% params$W2, 2L, params$b2, "+"))
        dz <- (pr - Y[idx, , drop = FALSE]) / length(idx)
        dh <- (dz %*% t(params$W2)) * mask * (a > 0)
        grads <- list(W1 = crossprod(xb, dh), b1 = colSums(dh),
                      W2 = crossprod(h, dz), b2 = colSums(dz))
        t <- t + 1
        for (nm in names(params)) {
          m[[nm]] <- 0.9 * m[[nm]] + 0.1 * grads[[nm]]
          v[[nm]] <- 0.999 * v[[nm]] + 0.001 * grads[[nm]]^2
          params[[nm]] <- params[[nm]] - lr * (m[[nm]] / (1 - 0.9^t)) /
            (sqrt(v[[nm]] / (1 - 0.999^t)) + 1e-7)
        }
      }
      tr <- evaluate(x, y)
      te <- evaluate(x_test, y_test)
      history <- rbind(history, data.frame(epoch = epoch, loss = tr[["loss"]], accuracy = tr[["accuracy"]],
                                           val_loss = te[["loss"]], val_accuracy = te[["accuracy"]]))
    }
    predicted <- factor(levels(y)[max.col(predict_p(x_test), ties.method = "first")], levels = levels(y))
    list(history = history, predicted = predicted)
  })
}
