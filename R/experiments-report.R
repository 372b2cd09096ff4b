# The results of alexnet_experiments(): the table beside the seed's numbers,
# printing, as.data.frame() and the seed's plots; and the small formatting
# helpers that the progress messages share with them.

# The seed's results (Kaggle dogs vs cats, 1000 + 400 images per class,
# Keras 1 + Theano on a Tesla K20).
.seed_results <- c(scratch = 0.845, scratch_train = 0.98, finetune = 0.89, features = 0.83)

last <- function(x) if (length(x)) x[[length(x)]] else NA_real_
pct <- function(x) if (is.na(x)) "-" else sprintf("%.1f%%", 100 * x)
fmt_scale <- function(scale) {
  inv <- 1 / scale
  if (scale < 1 && abs(inv - round(inv)) < 1e-6) sprintf("1/%d", round(inv)) else format(signif(scale, 4))
}
plural <- function(n, word) sprintf("%s %s%s", paste(n, collapse = "/"), word, if (all(n == 1)) "" else "s")
fmt_time <- function(sec) {
  if (sec < 60) sprintf("%.0f s", sec) else if (sec < 3600) sprintf("%.1f min", sec / 60) else sprintf("%.1f h", sec / 3600)
}

results_table <- function(fit1, fit2, svm, classifier, timing, s) {
  row <- function(experiment, method, test, train, seed, seconds) {
    data.frame(experiment = experiment, method = method, test_accuracy = test,
               train_accuracy = train, seed_accuracy = seed, seconds = seconds,
               stringsAsFactors = FALSE)
  }
  h1 <- fit1$history
  rows <- list(row("1", sprintf("from scratch, %d epoch%s", nrow(h1), if (nrow(h1) == 1L) "" else "s"), last(h1$val_accuracy),
                   last(h1$accuracy), .seed_results[["scratch"]], timing[["scratch"]]))
  if (!is.null(fit2)) {
    h2 <- fit2$history
    rows[[2]] <- row("2", sprintf("fine-tuning, %d stages, %d epoch%s", length(unique(h2$stage)), nrow(h2),
                             if (nrow(h2) == 1L) "" else "s"),
                     last(h2$val_accuracy), last(h2$accuracy), .seed_results[["finetune"]],
                     timing[["finetune"]])
  }
  if (!is.null(svm)) {
    rows[[3]] <- row("3", "convpool_5 + linear SVM", svm$linear[["test"]], svm$linear[["train"]],
                     NA_real_, svm$linear[["seconds"]])
    rows[[4]] <- row("3", "convpool_5 + RBF SVM", svm$rbf[["test"]], svm$rbf[["train"]],
                     NA_real_, svm$rbf[["seconds"]])
    hc <- classifier$history
    rows[[5]] <- row("3", sprintf("convpool_5 + %d-unit classifier", s$mlp_units),
                     last(hc$val_accuracy), last(hc$accuracy), .seed_results[["features"]],
                     classifier$seconds)
  }
  tab <- do.call(rbind, rows)
  rownames(tab) <- NULL
  tab
}

history_table <- function(x) {
  out <- list()
  for (nm in c("pretrain", "scratch", "finetune", "classifier")) {
    h <- x$histories[[nm]]
    if (is.null(h) || nrow(h) == 0L) next
    h <- h[, intersect(c("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr", "seconds", "stage"), names(h))]
    for (col in c("lr", "seconds", "stage")) if (!col %in% names(h)) h[[col]] <- NA
    out[[nm]] <- cbind(run = nm, h, stringsAsFactors = FALSE)
  }
  res <- do.call(rbind, out)
  rownames(res) <- NULL
  res
}

#' @export
print.alexnet_experiments <- function(x, ...) {
  r <- x$run
  cat(sprintf("<alexnet_experiments> %s, %s run of %s on %s (%s)\n", x$data$name,
              r$size, r$date, r$machine, r$backend))
  cat(sprintf("%s Total time %s.\n\n", x$data$description, fmt_time(x$timing[["total"]])))
  tab <- x$table
  seed <- ifelse(is.na(tab$seed_accuracy), "-", sprintf("%g%%", 100 * tab$seed_accuracy))
  seed[tab$experiment == "1"] <- sprintf("%s (train 98%%)", seed[tab$experiment == "1"])
  cols <- list(
    exp = c("", "", tab$experiment),
    method = c("experiment", "", tab$method),
    test = c("test", "accuracy", vapply(tab$test_accuracy, pct, "")),
    train = c("train", "accuracy", vapply(tab$train_accuracy, pct, "")),
    time = c("time", "", vapply(tab$seconds, fmt_time, "")),
    seed = c("seed: dogs vs cats", "(Keras/Theano, full)", seed)
  )
  w <- vapply(cols, function(v) max(nchar(v)), 1L)
  lines <- paste(formatC(cols$exp, width = w[1L]), formatC(cols$method, width = -w[2L]),
                 formatC(cols$test, width = w[3L]), formatC(cols$train, width = w[4L]),
                 formatC(cols$time, width = w[5L]), " ", formatC(cols$seed, width = -w[6L]),
                 sep = "  ")
  cat(paste0(lines, "\n"), sep = "")
  if (!r$size %in% "full") {
    st <- x$settings
    cat(sprintf("\nA %s run, not the seed's protocol: %d training and %d test images per class (seed: 1000, 400),\n%s from scratch (seed: 80), %s of %s (seed: 8 of 10 epochs)%s.\n",
                r$size, x$data$n_train, x$data$n_test, plural(st$scratch_epochs, "epoch"),
                plural(length(st$finetune_layers), "fine-tuning stage"),
                plural(unique(st$finetune_epochs), "epoch"),
                if (!is.null(r$weights)) sprintf(", pretrained weights %s", basename(r$weights))
                else if (x$data$name == "Fashion-MNIST") sprintf(", pretraining on %d images per class for %s", st$pretrain_n, plural(st$pretrain_epochs, "epoch")) else ""))
  }
  cat("The seed reports one number for its features (83%): a small 256-unit classifier on convpool_5 (an SVM being its alternative).\n")
  if (!identical(x$settings$loss, "mse") || x$settings$scale != 1) {
    rates <- rle(x$settings$finetune_lr)
    rates <- paste(sprintf("%g%s", rates$values, ifelse(rates$lengths > 1L, sprintf(" x%d", rates$lengths), "")),
                   collapse = ", ")
    cat(sprintf("Optimiser: %s loss, input scale %s, lr %g from scratch, fine-tuning lr %s by stage\n(the seed: MSE, scale 1, lr 0.01, fine-tuning 0.01 then 0.001; from scratch those stay at chance here).\n",
                x$settings$loss, fmt_scale(x$settings$scale), x$settings$scratch_lr, rates))
  }
  invisible(x)
}

#' @export
as.data.frame.alexnet_experiments <- function(x, ...) x$table

#' Plot the results of the experiments
#'
#' The seed's figures: accuracy per epoch, training from scratch against
#' fine-tuning, on the training and the test images (the fine-tuning stages
#' marked), with the seed's final accuracies as reference lines; and for each
#' of the two runs its accuracy and loss (see [plot.alexnet_fit()]).
#'
#' @param x The result of [alexnet_experiments()].
#' @param dir `NULL` to draw on the current device; or a folder to write
#'   the plots to as PNG files: `accuracy.png`, `scratch.png` and
#'   `finetune.png`.
#' @param which Which plots: any of `"accuracy"`, `"scratch"`,
#'   `"finetune"`. On the current device the default is `"accuracy"` only.
#' @param width,height,res Size of the PNG files, in pixels, and their
#'   resolution.
#' @param ... Unused.
#' @return The paths of the files written (`dir`), or `x`, invisibly.
#' @export
#' @examples
#' res <- readRDS(system.file("extdata", "experiments-quick.rds", package = "alexnet"))
#' plot(res)
#' files <- plot(res, dir = tempdir())
#' files
plot.alexnet_experiments <- function(x, dir = NULL, which = if (is.null(dir)) "accuracy" else c("accuracy", "scratch", "finetune"),
                                     width = 1200, height = 600, res = 110, ...) {
  which <- match.arg(which, c("accuracy", "scratch", "finetune"), several.ok = TRUE)
  which <- which[vapply(which, function(w) w == "accuracy" || !is.null(x$histories[[w]]), TRUE)]
  draw <- function(w) {
    switch(w,
      accuracy = plot_accuracy(x),
      scratch = plot_fit(x$histories$scratch, x$settings$loss, "Experiment 1: training from scratch"),
      finetune = plot_fit(x$histories$finetune, x$settings$loss, "Experiment 2: layer-wise fine-tuning"))
  }
  if (is.null(dir)) {
    for (w in which) draw(w)
    return(invisible(x))
  }
  check_string(dir)
  dir.create(dir, recursive = TRUE, showWarnings = FALSE)
  files <- file.path(dir, paste0(which, ".png"))
  for (i in seq_along(which)) {
    grDevices::png(files[i], width = width, height = height, res = res)
    tryCatch(draw(which[i]), finally = grDevices::dev.off())
  }
  files
}

plot_fit <- function(h, loss, title) {
  old <- graphics::par(oma = c(0, 0, 2, 0))
  on.exit(graphics::par(old))
  plot(structure(list(history = h, loss = loss), class = "alexnet_fit"))
  graphics::mtext(title, side = 3, line = 0.5, outer = TRUE, font = 2, cex = 1.2)
}

plot_accuracy <- function(x) {
  h1 <- x$histories$scratch
  h2 <- x$histories$finetune
  old <- graphics::par(mar = c(4.2, 4.2, 3, 1))
  on.exit(graphics::par(old))
  epochs <- max(nrow(h1), if (!is.null(h2)) nrow(h2) else 0L)
  acc <- c(h1$accuracy, h1$val_accuracy, h2$accuracy, h2$val_accuracy, .seed_results[c("scratch", "finetune")])
  ylim <- c(max(0, min(0.5, acc, na.rm = TRUE)), 1.06)
  graphics::plot(NA, xlim = c(1, max(epochs, 2L)), ylim = ylim, xlab = "epoch", ylab = "accuracy", yaxt = "n",
                 main = sprintf("%s, %s run: accuracy per epoch", x$data$name, x$run$size))
  graphics::axis(2, at = seq(0, 1, by = 0.1))
  graphics::abline(h = seq(0, 1, by = 0.1), col = "grey92")
  graphics::abline(h = 1, col = "grey70")
  cols <- c(scratch = "steelblue", finetune = "darkorange")
  if (!is.null(h2) && "stage" %in% names(h2)) {
    starts <- which(!duplicated(h2$stage))[-1L]
    graphics::abline(v = starts - 0.5, lty = 3, col = "grey60")
    graphics::text(c(graphics::par("usr")[1L], starts - 0.5), 1.045, h2$stage[c(1, starts)],
                   pos = 4, cex = 0.65, col = "grey40", offset = 0.2)
  }
  graphics::abline(h = .seed_results[["scratch"]], col = cols[["scratch"]], lty = 3)
  graphics::abline(h = .seed_results[["finetune"]], col = cols[["finetune"]], lty = 3)
  lines_for <- function(h, col) {
    graphics::lines(h$epoch, h$accuracy, col = col, lwd = 2, lty = 2, type = "o", pch = 1, cex = 0.6)
    graphics::lines(h$epoch, h$val_accuracy, col = col, lwd = 2, lty = 1, type = "o", pch = 19, cex = 0.6)
  }
  lines_for(h1, cols[["scratch"]])
  leg <- c("from scratch, train", "from scratch, test")
  if (!is.null(h2)) {
    lines_for(h2, cols[["finetune"]])
    leg <- c(leg, "fine-tuning, train", "fine-tuning, test")
  }
  graphics::legend("bottomright", c(leg, "seed's final test accuracy"), bg = "white",
                   col = c(rep(cols[seq_len(length(leg) / 2)], each = 2), "grey40"),
                   lty = c(rep(c(2, 1), length(leg) / 2), 3), lwd = c(rep(2, length(leg)), 1),
                   pch = c(rep(c(1, 19), length(leg) / 2), NA), cex = 0.8)
  invisible(x)
}

# Grad-CAM of the fine-tuned net on the first test image of each class, for
# its true class: where in a pullover does the net find "Pullover"?
gradcam_picture <- function(net, d, file, width = 1300, height = 520, res = 110) {
  labels <- d$test_labels
  idx <- vapply(unique(as.character(labels)), function(cl) which(labels == cl)[1L], 1L)
  images <- d$test[idx]
  truth <- as.character(labels[idx])
  cam <- alexnet_gradcam(net, images, class = truth)
  pred <- as.character(predict(net, images, type = "class"))
  titles <- sprintf("a %s (predicted: %s); evidence for %s", truth, pred, truth)
  grDevices::png(file, width = width, height = height, res = res)
  tryCatch(plot(cam, image = seq_along(idx), titles = titles), finally = grDevices::dev.off())
  file
}
