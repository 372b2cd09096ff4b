# The seed's three experiments (see experiments-run.R): their settings, the
# presets of experiment_settings() and the lines that describe them.

#' Settings of the experiments
#'
#' Every size, epoch count and learning rate of [alexnet_experiments()], for
#' one of the presets; any of them can be changed through `...`.
#'
#' * `"full"` is the seed's protocol: 1000 training and 400 test images per
#'   class, batch 16, 80 epochs from scratch, the eight fine-tuning stages
#'   of 10 epochs each (`dense_3`, then `dense_2`, `dense_1`, `conv_5`,
#'   `conv_4`, `conv_3`, `conv_2`, `conv_1`), and for Fashion-MNIST a
#'   pretraining on the eight other classes (1000 images per class, 10
#'   epochs) that stands in for the ImageNet weights. On the CPU that is
#'   many hours.
#' * `"quick"` keeps every step of the protocol but with fewer images and
#'   epochs, so that the whole run, pretraining included, takes about 7
#'   minutes on two idle CPU cores: 200 training and 100 test images per
#'   class, 8 epochs from scratch, the eight fine-tuning stages with the
#'   seed's 10 epochs for the dense stages (cheap: the frozen convolutions
#'   are computed once, see `frozen_once` in [alexnet_train()]) and 1 for
#'   each convolution stage, pretraining on 200 images per class for 3
#'   epochs.
#' * `"tiny"` is a smoke test of well under a minute (20 images per class, 1
#'   epoch, two fine-tuning stages), for tests and examples: its accuracies
#'   mean nothing.
#'
#' @section Deviations from the seed's optimiser:
#' The seed trained with `sgd(lr = 0.01, momentum = 0.9, nesterov = TRUE,
#' decay = 1e-6)` on the mean squared error of the softmax, with the raw
#' `pixel - mean` input of the Heuritech model, and fine-tuned with lr 0.01
#' for the new `dense_3`, then 0.001. With the package's `he_normal`
#' initialisation that raw input gives logits in the thousands: the softmax
#' saturates at once and training from scratch never leaves chance level
#' (measured on Pullover vs Coat, 100 + 100 images per class, 5 epochs: loss
#' 0.5 and accuracy 0.5 in every epoch; with cross-entropy and lr 0.001 the
#' loss is NaN). The defaults therefore feed `(pixel - mean) / 255` (`scale
#' = 1/255`, also for the pretraining: `pretrain_scale`), use cross-entropy,
#' lr 0.001 from scratch, and fine-tune the dense stages at the seed's rates
#' (0.01 for `dense_3`, then 0.001) but the convolution stages at 0.0001:
#' measured on the quick sizes with 10 epochs per dense stage, the final
#' test accuracy was 81.0% with these rates, 78.0% with 0.001 then 0.0001
#' everywhere, 81.0% but unsteady (75.5% after `conv_5`) with 0.001 for the
#' convolution stages too. The seed's settings are one call away:
#' `experiment_settings(loss = "mse", scratch_lr = 0.01, scale = 1)`, which
#' also selects the seed's fine-tuning rates (with `loss = "mse"` they are
#' the default). The pretraining, which the seed did not have, always uses
#' cross-entropy.
#'
#' @param size `"quick"`, `"full"` or `"tiny"`.
#' @param ... Settings to change, by name (see Value).
#' @return An object of class `"alexnet_experiment_settings"`: a list with
#'   `size`; `classes` (the two classes of the task, Fashion-MNIST);
#'   `n_train`, `n_test` (images per class); `pretrain_classes`,
#'   `pretrain_n`, `pretrain_n_test`, `pretrain_epochs`, `pretrain_lr`,
#'   `pretrain_scale` (the pretraining that stands in for ImageNet, and the
#'   input scale of the nets that load its weights); `scratch_epochs`,
#'   `scratch_lr`; `finetune_layers`, `finetune_epochs` (per stage),
#'   `finetune_lr` (one per stage; by default the seed's 0.01 for
#'   `dense_3` and 0.001 for the other dense stages, then 0.0001 for the
#'   convolution stages with cross-entropy, 0.001 with MSE as the seed);
#'   `batch_size`,
#'   `momentum`, `nesterov`, `decay`, `loss` (of experiments 1 and 2),
#'   `scale` (the input scale of experiment 1), `dropout`; `svm_cost`;
#'   `mlp_units`,
#'   `mlp_epochs`, `mlp_lr`; `augment` (dogs vs cats only); `data_path`
#'   (the dogs-vs-cats folder holding `Train/` and `Test/`); `seed`;
#'   `reuse_pretrained` (reuse a pretrained file of `dir` made with the same
#'   settings); `precision` (`"f32"` or `"bf16"`: of every network of the
#'   run, see [alexnet_precision()]).
#' @seealso [alexnet_experiments()]
#' @export
#' @examples
#' experiment_settings("quick")
#' # the seed's own optimiser and loss
#' experiment_settings("full", loss = "mse", scratch_lr = 0.01, scale = 1)
experiment_settings <- function(size = c("quick", "full", "tiny"), ...) {
  size <- match.arg(size)
  layers <- c("dense_3", "dense_2", "dense_1", "conv_5", "conv_4", "conv_3", "conv_2", "conv_1")
  s <- list(
    size = size,
    classes = c("Pullover", "Coat"),
    n_train = 1000L, n_test = 400L,
    pretrain_classes = NULL,
    pretrain_n = 1000L, pretrain_n_test = 100L, pretrain_epochs = 10L, pretrain_lr = 0.001,
    pretrain_scale = 1 / 255,
    scratch_epochs = 80L, scratch_lr = 0.001,
    finetune_layers = layers, finetune_epochs = 10L,
    finetune_lr = NULL,
    batch_size = 16L, momentum = 0.9, nesterov = TRUE, decay = 1e-6,
    loss = "cross_entropy", scale = 1 / 255, dropout = 0.5,
    svm_cost = 1, mlp_units = 256L, mlp_epochs = 30L, mlp_lr = 1e-4,
    augment = TRUE, data_path = "Data", seed = 1, reuse_pretrained = TRUE,
    precision = "f32"
  )
  if (size == "quick") {
    s[c("n_train", "n_test", "pretrain_n", "pretrain_n_test", "pretrain_epochs",
        "scratch_epochs", "finetune_epochs")] <- list(200L, 100L, 200L, 25L, 3L, 8L,
                                                        c(10L, 10L, 10L, 1L, 1L, 1L, 1L, 1L))
  } else if (size == "tiny") {
    s[c("n_train", "n_test", "pretrain_n", "pretrain_n_test", "pretrain_epochs",
        "scratch_epochs", "finetune_epochs", "mlp_epochs")] <- list(20L, 20L, 10L, 5L, 1L, 1L, 1L, 10L)
    s$finetune_layers <- c("dense_3", "conv_1")
  }
  changes <- list(...)
  if (length(changes) > 0L) {
    unknown <- setdiff(names(changes), names(s))
    if (is.null(names(changes)) || any(names(changes) == "") || length(unknown) > 0L) {
      abort(c("Unknown experiment setting{?s}: {.val {if (length(unknown)) unknown else '(unnamed)'}}.",
              i = "The settings are {.val {names(s)}}."))
    }
    s[names(changes)] <- changes
  }
  s$loss <- match.arg(s$loss, c("cross_entropy", "mse"))
  s$precision <- check_precision(s$precision)
  if (!"finetune_lr" %in% names(changes)) {
    # the seed's rates: 0.01 for the new dense_3, then 0.001; with
    # cross-entropy the convolution stages take 0.0001 (its larger gradients
    # threw the pretrained convolutions off at 0.001: see the vignette)
    layers <- s$finetune_layers
    s$finetune_lr <- ifelse(seq_along(layers) == 1L, 0.01,
                            ifelse(s$loss == "mse" | layers %in% c("dense_1", "dense_2", "dense_3"), 0.001, 1e-4))
  }
  if (is.null(s$pretrain_classes)) {
    s$pretrain_classes <- setdiff(.fashion_mnist_classes, s$classes)
  }
  for (k in c("n_train", "n_test", "pretrain_n", "pretrain_n_test", "pretrain_epochs",
              "scratch_epochs", "batch_size", "mlp_units", "mlp_epochs")) {
    s[[k]] <- check_count(s[[k]], arg = k)
  }
  s$finetune_epochs <- vapply(s$finetune_epochs, check_count, 1L, arg = "finetune_epochs")
  for (k in c("pretrain_lr", "pretrain_scale", "scratch_lr", "scale", "svm_cost", "mlp_lr")) {
    check_number(s[[k]], min = 0, open_min = TRUE, arg = k)
  }
  if (length(s$classes) != 2L) {
    abort("{.arg classes} must name two classes: the experiments are a two-class task, as dogs vs cats.")
  }
  # checks the layer names, epochs and rates
  finetune_schedule(s$finetune_layers, epochs = s$finetune_epochs, lr = s$finetune_lr)
  structure(s, class = "alexnet_experiment_settings")
}

#' @export
print.alexnet_experiment_settings <- function(x, ...) {
  cat(sprintf("<alexnet_experiment_settings> size %s\n", x$size))
  cat(paste0(" ", settings_lines(x), "\n"), sep = "")
  invisible(x)
}

settings_lines <- function(s, data = "fashion-mnist") {
  full <- experiment_settings("full")
  vs <- function(k, fmt = "%s") {
    if (identical(s[[k]], full[[k]])) sprintf(fmt, s[[k]]) else sprintf(paste(fmt, "(full: %s)"), s[[k]], full[[k]])
  }
  stages <- length(s$finetune_layers)
  fe <- unique(s$finetune_epochs)
  lr <- unique(s$finetune_lr)
  c(
    if (data == "fashion-mnist") sprintf("task: Fashion-MNIST, %s vs %s", s$classes[1L], s$classes[2L]),
    sprintf("images per class: %s training, %s test", vs("n_train"), vs("n_test")),
    if (data == "fashion-mnist") sprintf("pretraining (stands in for ImageNet): %d other classes, %s images per class, %s epochs, lr %g",
                                         length(s$pretrain_classes), vs("pretrain_n"), vs("pretrain_epochs"), s$pretrain_lr),
    sprintf("1. from scratch: %s epochs, lr %g", vs("scratch_epochs"), s$scratch_lr),
    sprintf("2. fine-tuning: %d stage%s (%s)%s, epochs %s%s, lr %s", stages, if (stages == 1L) "" else "s",
            paste(s$finetune_layers, collapse = ", "),
            if (stages != length(full$finetune_layers)) sprintf(" (full: %d stages)", length(full$finetune_layers)) else "",
            if (length(fe) == 1L) sprintf("%d each", fe) else paste(rep_len(s$finetune_epochs, stages), collapse = "/"),
            if (!identical(s$finetune_epochs, full$finetune_epochs)) sprintf(" (full: %d each)", full$finetune_epochs) else "",
            paste(sprintf("%g", rep_len(s$finetune_lr, stages)), collapse = "/")),
    sprintf("3. convpool_5 features: SVM linear and RBF (cost %g); %d-unit classifier, dropout 0.5, %s epochs",
            s$svm_cost, s$mlp_units, vs("mlp_epochs")),
    sprintf("optimiser: SGD momentum %g%s, decay %g, batch %d; loss %s; input (pixel - mean) * %s%s",
            s$momentum, if (isTRUE(s$nesterov)) " (Nesterov)" else "", s$decay, s$batch_size,
            s$loss, fmt_scale(s$scale),
            if (s$loss == "mse" && s$scale == 1 && s$scratch_lr == 0.01) " (the seed's settings)"
            else " (the seed: MSE, lr 0.01, scale 1, which do not train from scratch here; see ?experiment_settings)"),
    if (s$precision == "bf16") "precision: bf16 (convolutions multiply in bfloat16)"
  )
}
