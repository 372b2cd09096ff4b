# Training: the optimiser, alexnet_train(), layer-wise fine-tuning, freezing.
# The epoch and batch loops are here, in R, one engine call per batch: an
# interrupt between batches is an ordinary R condition, caught below.

.param_layers <- NULL   # from the engine at load (R/alexnet-package.R)

#' Stochastic gradient descent, as Keras defines it
#'
#' The optimiser of the seed's experiments: momentum, optional Nesterov
#' momentum and Keras' time decay of the learning rate,
#' `lr_t = lr / (1 + decay * iterations)`, where `iterations` counts the SGD
#' steps taken so far.
#'
#' @param lr Learning rate (> 0).
#' @param momentum Momentum, in `[0, 1)`.
#' @param nesterov Use Nesterov momentum.
#' @param decay Time decay of the learning rate per step (>= 0).
#' @param weight_decay L2 penalty added to the gradient of the weights (not
#'   the biases), >= 0.
#' @return An object of class `"alexnet_sgd"`.
#' @export
#' @examples
#' sgd(lr = 0.01, momentum = 0.9, nesterov = TRUE, decay = 1e-6)
sgd <- function(lr = 0.01, momentum = 0.9, nesterov = TRUE, decay = 1e-6, weight_decay = 0) {
  check_number(lr, min = 0, open_min = TRUE)
  check_number(momentum, min = 0, max = 1, open_max = TRUE)
  check_number(decay, min = 0)
  check_number(weight_decay, min = 0)
  check_flag(nesterov)
  structure(list(lr = lr, momentum = momentum, nesterov = nesterov, decay = decay,
                 weight_decay = weight_decay), class = "alexnet_sgd")
}

#' @export
print.alexnet_sgd <- function(x, ...) {
  cat(sprintf("<sgd> lr %g, momentum %g%s, decay %g, weight decay %g\n", x$lr, x$momentum,
              if (x$nesterov) " (Nesterov)" else "", x$decay, x$weight_decay))
  invisible(x)
}

check_number <- function(x, min = -Inf, max = Inf, open_min = FALSE, open_max = FALSE,
                         arg = caller_arg(x), call = caller_env()) {
  ok <- is.numeric(x) && length(x) == 1L && !is.na(x) && is.finite(x) &&
    (if (open_min) x > min else x >= min) && (if (open_max) x < max else x <= max)
  if (!ok) {
    range <- sprintf("%s%s, %s%s", if (open_min) "(" else "[", min, max, if (open_max) ")" else "]")
    shown <- if (is.numeric(x) && length(x) == 1L) format(x) else paste0("a ", class(x)[1L], " of length ", length(x))
    abort("{.arg {arg}} must be a single number in {range}, not {shown}.", call = call)
  }
  invisible(x)
}

# 0-based engine index of a parameter layer; accepts the Keras names of the
# two halves of a grouped layer (conv_5_1 -> conv_5) and the seed's
# dense_3_new.
param_layer_index <- function(layer, arg = caller_arg(layer), call = caller_env()) {
  check_string(layer, arg = arg, call = call)
  base <- sub("_new$", "", sub("^(conv_[245])_[12]$", "\\1", layer))
  i <- match(base, .param_layers)
  if (is.na(i)) {
    abort(c("{.arg {arg}} is {.val {layer}}, which is not a layer with weights.",
            i = "Layers with weights: {.val {(.param_layers)}} (and the Keras halves {.val {c('conv_2_1', 'conv_4_1', 'conv_5_1')}}, ...)."),
          call = call)
  }
  i - 1L
}

#' Freeze and unfreeze layers
#'
#' `unfreeze(net, from)` lets `from` and every layer after it learn and
#' freezes the layers before it, as the seed's layer-wise fine-tuning does.
#' `freeze(net, through)` freezes `through` and every layer before it.
#' `trainable_layers()` lists the layers that learn. The change is made in
#' place: `net` itself is modified.
#'
#' @param net A network made by [alexnet()].
#' @param from,through A layer with weights: `"conv_1"` ... `"conv_5"`,
#'   `"dense_1"` ... `"dense_3"`; the Keras names of grouped halves
#'   (`"conv_5_1"`) mean the whole layer.
#' @return `net`, invisibly (`trainable_layers()`: a character vector).
#' @export
#' @examples
#' net <- alexnet(classes = 2, seed = 1)
#' unfreeze(net, from = "dense_2")
#' trainable_layers(net)
#' freeze(net, through = "dense_2")
#' trainable_layers(net)
unfreeze <- function(net, from = "conv_1") {
  check_net(net)
  i <- param_layer_index(from)
  engine(.Call(C_set_trainable_from, net$ptr, i))
  invisible(net)
}

#' @rdname unfreeze
#' @export
freeze <- function(net, through) {
  check_net(net)
  i <- param_layer_index(through)
  if (i + 1L >= length(.param_layers)) {
    abort("{.arg through} cannot be the last layer: at least {.val dense_3} must learn.")
  }
  engine(.Call(C_set_trainable_from, net$ptr, i + 1L))
  invisible(net)
}

#' @rdname unfreeze
#' @export
trainable_layers <- function(net) {
  check_net(net)
  .param_layers[seq(.Call(C_get_trainable_from, net$ptr) + 1L, length(.param_layers))]
}

# Labels of `data` as 0-based class indices of `net`.
label_codes <- function(net, labels, arg, call = caller_env()) {
  if (is.null(labels)) {
    abort(c("{.arg {arg}} has no labels.",
            i = "Give them with {.code image_array(x, labels = ...)}, {.code image_files(files, labels = ...)}, or use {.fn image_folder} (one sub-folder per class)."),
          call = call)
  }
  codes <- match(as.character(labels), net$labels)
  if (anyNA(codes)) {
    unknown <- unique(as.character(labels)[is.na(codes)])
    abort(c("The labels of {.arg {arg}} do not match the classes of {.arg net}.",
            x = "Unknown: {.val {unknown}}.",
            i = "The net's classes are {.val {net$labels}}; create it with {.code alexnet(labels = levels(labels))}."),
          call = call)
  }
  codes - 1L
}

as_labelled_images <- function(x, arg = caller_arg(x), call = caller_env()) {
  if (!inherits(x, c("image_array", "image_folder"))) {
    abort("{.arg {arg}} must be an {.fn image_array} or {.fn image_folder} with labels, not {.obj_type_friendly {x}}.",
          call = call)
  }
  x
}

# Evaluate `expr` with R's RNG seeded, leaving the user's RNG state as it was.
with_seed <- function(seed, expr) {
  if (is.null(seed)) {
    return(expr)
  }
  env <- globalenv()
  old <- if (exists(".Random.seed", envir = env, inherits = FALSE)) get(".Random.seed", envir = env)
  on.exit(if (is.null(old)) rm(".Random.seed", envir = env) else assign(".Random.seed", old, envir = env))
  set.seed(seed)
  expr
}

loss_code <- function(loss) c(cross_entropy = 0L, mse = 1L)[[loss]]

sgd_vector <- function(opt) {
  c(opt$lr, opt$momentum, opt$decay, opt$weight_decay, as.numeric(opt$nesterov))
}

#' Train a network
#'
#' Trains `net` on labelled images with stochastic gradient descent, as the
#' seed's first experiment did (there: 80 epochs, batch 16,
#' `sgd(lr = 0.01, momentum = 0.9, nesterov = TRUE, decay = 1e-6)`, mean
#' squared error on the softmax). The network is modified in place.
#'
#' A progress bar shows images per second and the time left (when `verbose`).
#' Pressing Ctrl-C (an interrupt) stops training and returns what was done
#' so far: the net keeps the weights of the last finished batch (a batch being
#' computed is finished first) and the history its finished epochs; `steps`
#' counts every batch taken. With `checkpoint`, the state (weights,
#' optimiser, history) is written to that file after every epoch (safely: to a
#' temporary file that is then renamed), and a later call with the same
#' `checkpoint` resumes after the last finished epoch.
#'
#' The same `seed` gives the same history on the CPU.
#'
#' The optimiser's state (momentum and the step count behind the time decay)
#' carries over from one call to the next on the same network, as it does when
#' Keras' `fit()` is called again; [alexnet_finetune()] starts each stage with
#' a fresh optimiser.
#'
#' @param net A network made by [alexnet()].
#' @param data Training images with labels: an [image_array()], or an
#'   [image_folder()] of JPEG files (decoded in threads while the net
#'   computes, and augmented when it has an [image_augment()]).
#' @param validation Optional images with labels (an [image_array()] or an
#'   [image_folder()], never augmented), evaluated after every epoch
#'   (inference mode: no dropout).
#' @param epochs Number of epochs (passes over `data`).
#' @param batch_size Images per SGD step.
#' @param optimizer An optimiser made by [sgd()].
#' @param loss `"cross_entropy"` (the usual choice) or `"mse"` (the seed's
#'   mean squared error between the softmax and the one-hot label).
#' @param seed Seed for the order of the images and the dropout masks;
#'   `NULL` uses R's random number generator.
#' @param shuffle Shuffle the images every epoch.
#' @param dropout Dropout rate after `dense_1` and `dense_2` while training.
#' @param checkpoint `NULL`, or a file (`.rds`) for the training state.
#' @param verbose Show progress and a line per epoch: by default `TRUE`, in
#'   `Rscript` too (where the line per epoch is what a log keeps), unless
#'   `options(alexnet.verbose = FALSE)` is set.
#' @param group `NULL`, or the MPI ranks made by [alexnet_mpi()]: each rank
#'   of a script started by `mpirun` trains on its share of every batch and
#'   the gradients are summed over the ranks (data-parallel training).
#' @param frozen_once When the layers below the lowest learning one are
#'   frozen up to `convpool_5` or `dense_1` (see [freeze()]) and the images
#'   are not augmented, compute their output once per image instead of once
#'   per epoch, and train the rest from it (in memory: 36 KB per image from
#'   `convpool_5`, 16 KB from `dense_1`). Exact: the same losses and weights
#'   as without it for the same seed, dropout included, and ten or more
#'   times faster per epoch for the dense layers. `dense_1`'s output is
#'   kept before its dropout (a dropout mask changes what comes after it
#'   from step to step). Output that would take more than half the memory
#'   available (or `getOption("alexnet.frozen_memory")` bytes) is kept in
#'   a file in [tempdir()] that the system pages in as needed (removed at
#'   once: nothing is left behind); where that folder has no room either, it
#'   is not kept (a message says so when `verbose`). `FALSE` computes every
#'   layer in every epoch.
#' @return An object of class `"alexnet_fit"`: a list with `net` (the same
#'   object as `net`, trained), `history` (a data frame: `epoch`, `loss`,
#'   `accuracy`, `val_loss`, `val_accuracy`, `lr`, `seconds`),
#'   `interrupted`, `diverged` (`NULL`, or why training stopped: a batch
#'   whose mean loss was not finite or above 1000, whose step was not
#'   applied, so the net keeps the weights from before it) and `steps` (the
#'   SGD steps this call took, also those of an interrupted epoch) and
#'   `frozen_once` (`NULL`, or the layer whose output was computed once). It has
#'   [print()] and [plot()] methods.
#' @seealso [alexnet_finetune()], [sgd()], [unfreeze()]
#' @export
#' @examples
#' set.seed(1)
#' px <- array(runif(8 * 16 * 16, 0, 255), c(8, 16, 16))
#' px[5:8, , 1:8] <- 0
#' imgs <- image_array(px, labels = rep(c("light", "dark"), each = 4))
#' net <- alexnet(labels = c("dark", "light"), seed = 1)
#' fit <- alexnet_train(net, imgs, epochs = 1, batch_size = 4,
#'                      optimizer = sgd(lr = 1e-5), seed = 1)
#' fit$history
alexnet_train <- function(net, data, validation = NULL, epochs = 10, batch_size = 16,
                          optimizer = sgd(), loss = c("cross_entropy", "mse"), seed = NULL,
                          shuffle = TRUE, dropout = 0.5, checkpoint = NULL,
                          verbose = getOption("alexnet.verbose", TRUE), group = NULL,
                          frozen_once = TRUE) {
  check_net(net)
  group <- check_group(group)
  data <- as_labelled_images(data)
  labels <- label_codes(net, data$labels, "data")
  if (!is.null(validation)) {
    validation <- as_labelled_images(validation)
    val_labels <- label_codes(net, validation$labels, "validation")
  }
  epochs <- check_count(epochs)
  batch_size <- check_count(batch_size)
  if (!inherits(optimizer, "alexnet_sgd")) {
    abort("{.arg optimizer} must be made by {.fn sgd}, not {.obj_type_friendly {optimizer}}.")
  }
  loss <- match.arg(loss)
  if (!is.null(seed)) seed <- check_seed(seed)
  check_number(dropout, min = 0, max = 1, open_max = TRUE)
  if (!is.null(checkpoint)) check_string(checkpoint)
  check_flag(frozen_once)
  check_train_memory(net)
  check_batch_memory(net, n_images(data), batch_size, training = TRUE,
                     folder = inherits(data, "image_folder"))
  if (!is.null(validation)) {
    check_batch_memory(net, n_images(validation), batch_size, training = FALSE,
                       folder = inherits(validation, "image_folder"))
  }

  if (!is.null(group)) {
    # every rank starts from rank 0's weights; only rank 0 talks and writes
    engine(.Call(C_group_broadcast, group$ptr, net$ptr))
    verbose <- verbose && group$rank == 0L
  }
  writes_checkpoint <- !is.null(checkpoint) && (is.null(group) || group$rank == 0L)
  state <- list(history = empty_history(), epoch = 0L)
  if (!is.null(checkpoint) && file.exists(checkpoint)) {
    state <- restore_checkpoint(net, checkpoint)
    if (verbose) cli::cli_inform("Resuming from {.file {checkpoint}} after epoch {state$epoch}.")
  }
  n <- n_images(data)
  # the orders of all epochs and the dropout seed, drawn once from `seed`
  # (dropout seed first: a run of fewer epochs draws the same start)
  plan <- with_seed(seed, list(
    dropout_seed = as.double(sample.int(.Machine$integer.max, 1L)),
    orders = lapply(seq_len(epochs), function(e) if (shuffle) sample.int(n) else seq_len(n)),
    augment_seed = as.double(sample.int(.Machine$integer.max, 1L))
  ))
  # image folders are read by a threaded loader (R/folders.R), freed on exit
  src <- new.env(parent = emptyenv())
  val_src <- new.env(parent = emptyenv())
  on.exit(close_sources(src, val_src), add = TRUE)
  batch_source(data, net_input_size(net), training = TRUE, seed = plan$augment_seed, src = src)
  if (!is.null(validation)) batch_source(validation, net_input_size(net), src = val_src)
  frozen <- NULL
  if (frozen_once && is.null(group)) {
    # the engine picks the start from the frozen layers and the dropout rate
    engine(.Call(C_set_dropout, net$ptr, dropout, plan$dropout_seed))
    t_frozen <- proc.time()[["elapsed"]]
    frozen <- freeze_source(src, net, data, batch_size, training = TRUE, verbose = verbose)
    if (!is.null(frozen) && !is.null(validation)) {
      freeze_source(val_src, net, validation, batch_size, training = FALSE, verbose = verbose)
    }
    if (verbose && !is.null(frozen)) {
      where <- if (attr(frozen, "on_disk") > 0) sprintf(", %s in a file in tempdir()", format_gb(attr(frozen, "on_disk"))) else ""
      cli::cli_inform("Frozen layers up to {.field {frozen}} computed once ({sprintf('%.1f', proc.time()[['elapsed']] - t_frozen)} s{where}): each epoch runs the layers above it.")
    }
    frozen <- as.vector(frozen)
  }
  history <- state$history
  starts <- seq(1L, n, by = batch_size)
  # One handler around everything: an interrupt (raised by the engine glue at
  # the start of a batch) ends the run wherever it falls, with the net intact.
  epoch <- state$epoch
  done <- 0L
  steps <- 0
  stopped <- tryCatch({
    for (epoch in seq_len(epochs)[seq_len(epochs) > state$epoch]) {
      t0 <- proc.time()[["elapsed"]]
      lr_now <- optimizer$lr / (1 + optimizer$decay * .Call(C_get_state, net$ptr, "iterations"))
      order <- plan$orders[[epoch]]
      # dropout masks seeded per epoch, so a resumed run repeats an uninterrupted one
      engine(.Call(C_set_dropout, net$ptr, dropout, plan$dropout_seed + epoch))
      sums <- c(0, 0, 0)  # loss, correct, images used
      if (verbose) {
        bar <- cli::cli_progress_bar(
          format = paste("epoch", epoch, "/", epochs, if (!is.null(frozen)) paste("(above", frozen, "rows)"),
                         "{cli::pb_bar} {cli::pb_current}/{cli::pb_total}",
                         "| {ips} img/s | loss {sprintf('%.4f', running)} | ETA {cli::pb_eta}"),
          total = length(starts), clear = TRUE, .envir = environment())
      }
      ips <- "?"
      running <- NaN
      done <- 0L
      for (s in starts) {
        idx <- order[s:min(s + batch_size - 1L, n)]
        # The step and its bookkeeping are one unit: an interrupt that arrives
        # while the engine computes is raised once `done` counts the step, so
        # the net's weights are always those of the `done` images counted.
        suspendInterrupts({
          if (is.null(group)) {
            res <- train_batch(src, net, idx, labels[idx], loss_code(loss), sgd_vector(optimizer),
                               epoch, next_batch(order, s, batch_size))
          } else {
            # the loss and correct count come back summed over the ranks
            mine <- rank_share(idx, group)
            nxt <- next_batch(order, s, batch_size)
            res <- train_batch(src, net, mine$idx, labels[mine$idx], loss_code(loss),
                               sgd_vector(optimizer), epoch,
                               if (!is.null(nxt)) rank_share(nxt, group)$idx, share = mine$spec)
            res[3L] <- length(idx)
          }
          if (!is.null(attr(res, "diverged"))) {
            rlang::abort(attr(res, "diverged"), class = "alexnet_diverged")
          }
          sums <- sums + res
          done <- done + length(idx)
          steps <- steps + 1
        })
        .Call(C_check_interrupt)  # raise it now (R only checks now and then)
        running <- sums[1L] / done
        ips <- sprintf("%.1f", done / max(proc.time()[["elapsed"]] - t0, 1e-9))
        if (verbose) cli::cli_progress_update(id = bar)
      }
      if (verbose) cli::cli_progress_done(id = bar)
      val <- c(NA_real_, NA_real_)
      if (!is.null(validation)) {
        v <- evaluate_source(val_src, net, val_labels, loss_code(loss), batch_size)
        val <- v[1:2] / v[3L]
      }
      row <- data.frame(epoch = epoch, loss = sums[1L] / sums[3L], accuracy = sums[2L] / sums[3L],
                        val_loss = val[1L], val_accuracy = val[2L], lr = lr_now,
                        seconds = proc.time()[["elapsed"]] - t0)
      history <- rbind(history, row)
      if (verbose) {
        # short enough for one line of an 80-column log
        cli::cli_inform(sprintf("epoch %d/%d: loss %.4f, acc %.3f%s; %.1f s, %.0f img/s",
                                epoch, epochs, row$loss, row$accuracy,
                                if (is.null(validation)) "" else sprintf("; val loss %.4f, acc %.3f", row$val_loss, row$val_accuracy),
                                row$seconds, n / row$seconds))
      }
      if (writes_checkpoint) save_checkpoint(net, checkpoint, history, epoch)
    }
    NULL
  }, interrupt = function(e) "interrupted",
     alexnet_diverged = function(e) conditionMessage(e))
  interrupted <- identical(stopped, "interrupted")
  diverged <- if (!is.null(stopped) && !interrupted) stopped
  report_skipped(src, val_src)
  if (interrupted) {
    cli::cli_warn(c("Training interrupted in epoch {epoch} after {done} image{?s}.",
                    i = "The net keeps the weights of the last finished batch; the history has the {nrow(history)} finished epoch{?s}."))
  }
  if (!is.null(diverged)) {
    cli::cli_warn(c("Training stopped in epoch {epoch} after {done} image{?s}: {diverged}.",
                    i = "The net keeps the weights of the last step before it; the history has the {nrow(history)} finished epoch{?s}.",
                    i = "A smaller learning rate ({.code sgd(lr = )}) or inputs scaled down (the default {.code alexnet(scale = 1/255)}) usually train."))
  }
  rownames(history) <- NULL
  structure(list(net = net, history = history, interrupted = interrupted, diverged = diverged,
                 loss = loss, steps = steps, frozen_once = frozen),
            class = "alexnet_fit")
}

empty_history <- function() {
  data.frame(epoch = integer(), loss = numeric(), accuracy = numeric(), val_loss = numeric(),
             val_accuracy = numeric(), lr = numeric(), seconds = numeric())
}

save_checkpoint <- function(net, file, history, epoch) {
  state <- list(format = "alexnet-checkpoint", version = 1L, classes = net$classes,
                labels = net$labels, epoch = epoch, history = history,
                params = .Call(C_get_state, net$ptr, "params"),
                velocity = .Call(C_get_state, net$ptr, "velocity"),
                iterations = .Call(C_get_state, net$ptr, "iterations"))
  tmp <- paste0(file, ".tmp-", Sys.getpid())
  on.exit(unlink(tmp))
  saveRDS(state, tmp, compress = FALSE)
  if (!file.rename(tmp, file)) {
    abort("Could not write the checkpoint {.file {file}}.")
  }
}

restore_checkpoint <- function(net, file, call = caller_env()) {
  state <- tryCatch(readRDS(file), error = function(e) NULL)
  if (!is.list(state) || !identical(state$format, "alexnet-checkpoint")) {
    abort("{.file {file}} is not an alexnet checkpoint.", call = call)
  }
  if (state$classes != net$classes || !identical(state$labels, net$labels)) {
    abort("The checkpoint {.file {file}} is for a net with classes {.val {state$labels}}, not {.val {net$labels}}.",
          call = call)
  }
  engine(.Call(C_set_state, net$ptr, "params", state$params), call = call)
  engine(.Call(C_set_state, net$ptr, "velocity", state$velocity), call = call)
  engine(.Call(C_set_state, net$ptr, "iterations", state$iterations), call = call)
  state
}

#' @export
print.alexnet_fit <- function(x, ...) {
  h <- x$history
  cat(sprintf("<alexnet_fit> %d epoch%s, loss %s%s\n", nrow(h), if (nrow(h) == 1L) "" else "s",
              x$loss, if (isTRUE(x$interrupted)) " (interrupted)" else if (!is.null(x$diverged)) " (stopped: diverged)" else ""))
  if (nrow(h) > 0L) {
    shown <- h
    shown$seconds <- round(shown$seconds, 1)
    print(shown, digits = 4, row.names = FALSE)
  }
  invisible(x)
}

#' @export
as.data.frame.alexnet_fit <- function(x, ...) x$history

#' Plot a training history
#'
#' Accuracy and loss per epoch, for the training images and (when there was
#' one) the validation set, as in the seed's figures.
#'
#' @param x An `"alexnet_fit"` from [alexnet_train()] or [alexnet_finetune()].
#' @param ... Unused.
#' @return `x`, invisibly.
#' @export
#' @examples
#' h <- data.frame(epoch = 1:3, loss = c(0.7, 0.5, 0.4), accuracy = c(0.5, 0.7, 0.8),
#'                 val_loss = c(0.7, 0.6, 0.55), val_accuracy = c(0.5, 0.65, 0.7),
#'                 lr = 0.01, seconds = 1)
#' plot(structure(list(history = h, loss = "cross_entropy"), class = "alexnet_fit"))
plot.alexnet_fit <- function(x, ...) {
  h <- x$history
  if (nrow(h) == 0L) {
    abort("The history is empty: nothing to plot.")
  }
  step <- seq_len(nrow(h))
  old <- graphics::par(mfrow = c(1, 2), mar = c(4, 4, 2, 1))
  on.exit(graphics::par(old))
  has_val <- any(!is.na(h$val_accuracy))
  panel <- function(train, val, ylab, where) {
    ylim <- range(c(train, val), na.rm = TRUE)
    # points as well as lines: a history of one epoch is one point
    graphics::plot(step, train, type = "o", pch = 20, lwd = 2, col = "steelblue", ylim = ylim,
                   xlab = "epoch", ylab = ylab, main = ylab, xaxt = "n")
    graphics::axis(1, at = epoch_ticks(length(step)))
    if (has_val) graphics::lines(step, val, type = "o", pch = 20, lwd = 2, col = "darkorange")
    if ("stage" %in% names(h)) {
      starts <- step[!duplicated(h$stage)][-1L]
      graphics::abline(v = starts - 0.5, lty = 3, col = "grey50")
    }
    graphics::legend(where, legend = c("train", if (has_val) "validation"),
                     col = c("steelblue", if (has_val) "darkorange"), lwd = 2, bty = "n")
  }
  panel(h$accuracy, h$val_accuracy, "accuracy", "bottomright")
  panel(h$loss, h$val_loss, paste("loss", if (is.null(x$loss)) "" else paste0("(", x$loss, ")")), "topright")
  invisible(x)
}

# Whole epochs 1..n to label a history's x axis (pretty() alone gives 1.2, 1.4, ...).
epoch_ticks <- function(n) {
  ticks <- unique(round(pretty(seq_len(n))))
  ticks[ticks >= 1 & ticks <= n]
}

#' Fine-tuning schedules
#'
#' The seed's layer-wise strategy: train the new last layer alone, then
#' unfreeze one more layer at a time, from the top down, each stage for
#' `epochs` epochs with its own learning rate.
#'
#' @param layers The layer each stage unfreezes from, in order.
#' @param epochs Epochs per stage (recycled).
#' @param lr Learning rate per stage (recycled).
#' @return A data frame with columns `layer`, `epochs`, `lr` and class
#'   `"alexnet_schedule"`.
#' @export
#' @examples
#' finetune_schedule()
#' finetune_schedule(c("dense_3", "dense_1"), epochs = 2, lr = c(1e-2, 1e-3))
finetune_schedule <- function(layers = c("dense_3", "dense_2", "dense_1", "conv_5", "conv_4",
                                         "conv_3", "conv_2", "conv_1"),
                              epochs = 10, lr = c(1e-2, rep(1e-3, length(layers) - 1L))) {
  if (!is.character(layers) || length(layers) == 0L || anyNA(layers)) {
    abort("{.arg layers} must be a character vector of layer names.")
  }
  for (l in layers) param_layer_index(l, arg = "layers")
  n <- length(layers)
  epochs <- vapply(rep_len(epochs, n), function(e) check_count(e, arg = "epochs"), integer(1))
  lr <- rep_len(lr, n)
  for (r in lr) check_number(r, min = 0, open_min = TRUE, arg = "lr")
  structure(data.frame(layer = layers, epochs = epochs, lr = lr, stringsAsFactors = FALSE),
            class = c("alexnet_schedule", "data.frame"))
}

#' Fine-tune a network layer by layer
#'
#' Runs the stages of `schedule`: each unfreezes the layers from its `layer`
#' onwards (freezing those below), starts a fresh optimiser with the stage's
#' learning rate (as the seed did by compiling the Keras model again) and
#' trains for the stage's epochs. Stops early when interrupted.
#'
#' @inheritParams alexnet_train
#' @param schedule A [finetune_schedule()].
#' @param optimizer An [sgd()] whose settings other than `lr` are used in
#'   every stage.
#' @param ... Further arguments to [alexnet_train()] (e.g. `loss`, `seed`,
#'   `dropout`, `verbose`).
#' @return An `"alexnet_fit"` whose history has a `stage` column (the layer
#'   each stage unfroze from).
#' @export
#' @examples
#' set.seed(1)
#' px <- array(runif(8 * 16 * 16, 0, 255), c(8, 16, 16))
#' imgs <- image_array(px, labels = rep(c("a", "b"), 4))
#' net <- alexnet(labels = c("a", "b"), seed = 1)
#' fit <- alexnet_finetune(net, imgs, batch_size = 4,
#'                         schedule = finetune_schedule("dense_3", epochs = 1, lr = 1e-4))
#' fit$history
alexnet_finetune <- function(net, data, validation = NULL, schedule = finetune_schedule(),
                             batch_size = 16, optimizer = sgd(), ...) {
  check_net(net)
  if (!inherits(schedule, "alexnet_schedule")) {
    abort("{.arg schedule} must be made by {.fn finetune_schedule}.")
  }
  if (!inherits(optimizer, "alexnet_sgd")) {
    abort("{.arg optimizer} must be made by {.fn sgd}, not {.obj_type_friendly {optimizer}}.")
  }
  histories <- list()
  interrupted <- FALSE
  fit <- NULL
  verbose <- list(...)$verbose
  if (is.null(verbose)) verbose <- getOption("alexnet.verbose", TRUE)
  for (k in seq_len(nrow(schedule))) {
    if (isTRUE(verbose)) {
      cli::cli_inform("Stage {k}/{nrow(schedule)}: training from {.field {schedule$layer[k]}} up, lr {format(schedule$lr[k])}, {schedule$epochs[k]} epoch{?s}.")
    }
    unfreeze(net, from = schedule$layer[k])
    engine(.Call(C_set_state, net$ptr, "optimizer", NULL))
    opt <- optimizer
    opt$lr <- schedule$lr[k]
    fit <- alexnet_train(net, data, validation = validation, epochs = schedule$epochs[k],
                         batch_size = batch_size, optimizer = opt, ...)
    h <- fit$history
    h$stage <- rep(schedule$layer[k], nrow(h))
    histories[[k]] <- h
    if (fit$interrupted) {
      interrupted <- TRUE
      break
    }
    if (!is.null(fit$diverged)) break   # alexnet_train() has said so
  }
  history <- do.call(rbind, histories)
  history$epoch <- seq_len(nrow(history))
  rownames(history) <- NULL
  structure(list(net = net, history = history, interrupted = interrupted, diverged = fit$diverged,
                 loss = fit$loss),
            class = "alexnet_fit")
}
