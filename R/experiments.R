# The seed's three experiments (training from scratch, layer-wise
# fine-tuning, convpool_5 features into classifiers), run end to end on
# Fashion-MNIST (or the seed's dogs-vs-cats folders), with a results table
# beside the seed's numbers and its plots.

# The seed's results (Kaggle dogs vs cats, 1000 + 400 images per class,
# Keras 1 + Theano on a Tesla K20).
.seed_results <- c(scratch = 0.845, scratch_train = 0.98, finetune = 0.89, features = 0.83)

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
#'   epochs, so that the whole run, pretraining included, takes about 15-20
#'   minutes on two busy CPU cores (under 6 on two idle ones): 200 training
#'   and 100 test images per class, 8 epochs from scratch, the eight
#'   fine-tuning stages of 1 epoch each (the same 8 epochs in all),
#'   pretraining on 200 images per class for 3 epochs.
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
#' lr 0.001 from scratch, and fine-tune with rates ten times smaller than
#' the seed's (0.001 for `dense_3`, then 0.0001): with cross-entropy the
#' seed's 0.01 threw the new `dense_3` off (test accuracy 50% after its
#' stage, 67% at the end of a quick run, against 70% with the smaller
#' rates). The seed's settings are one call away:
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
#'   `finetune_lr` (one per stage; by default 0.001 then 0.0001, or the
#'   seed's 0.01 then 0.001 with `loss = "mse"`); `batch_size`,
#'   `momentum`, `nesterov`, `decay`, `loss` (of experiments 1 and 2),
#'   `scale` (the input scale of experiment 1), `dropout`; `svm_cost`;
#'   `mlp_units`,
#'   `mlp_epochs`, `mlp_lr`; `augment` (dogs vs cats only); `data_path`
#'   (the dogs-vs-cats folder holding `Train/` and `Test/`); `seed`;
#'   `reuse_pretrained` (reuse a pretrained file of `dir` made with the same
#'   settings).
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
    augment = TRUE, data_path = "Data", seed = 1, reuse_pretrained = TRUE
  )
  if (size == "quick") {
    s[c("n_train", "n_test", "pretrain_n", "pretrain_n_test", "pretrain_epochs",
        "scratch_epochs", "finetune_epochs")] <- list(200L, 100L, 200L, 25L, 3L, 8L, 1L)
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
  if (!"finetune_lr" %in% names(changes)) {
    # the seed's rates (0.01 for the new dense_3, then 0.001) go with its MSE
    # loss; cross-entropy's larger gradients want rates ten times smaller
    first <- if (s$loss == "mse") 0.01 else 0.001
    s$finetune_lr <- c(first, rep(first / 10, length(s$finetune_layers) - 1L))
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
    sprintf("2. fine-tuning: %d stage%s (%s)%s, %s epoch%s each%s, lr %s", stages, if (stages == 1L) "" else "s",
            paste(s$finetune_layers, collapse = ", "),
            if (stages != length(full$finetune_layers)) sprintf(" (full: %d stages)", length(full$finetune_layers)) else "",
            paste(fe, collapse = "/"), if (all(fe == 1L)) "" else "s",
            if (!identical(s$finetune_epochs, full$finetune_epochs)) sprintf(" (full: %d)", full$finetune_epochs) else "",
            if (length(s$finetune_lr) > 1L && all(s$finetune_lr[-1L] == s$finetune_lr[2L]))
              sprintf("%g then %g", s$finetune_lr[1L], s$finetune_lr[2L]) else paste(format(s$finetune_lr), collapse = ", ")),
    sprintf("3. convpool_5 features: SVM linear and RBF (cost %g); %d-unit classifier, dropout 0.5, %s epochs",
            s$svm_cost, s$mlp_units, vs("mlp_epochs")),
    sprintf("optimiser: SGD momentum %g%s, decay %g, batch %d; loss %s; input (pixel - mean) * %s%s",
            s$momentum, if (isTRUE(s$nesterov)) " (Nesterov)" else "", s$decay, s$batch_size,
            s$loss, fmt_scale(s$scale),
            if (s$loss == "mse" && s$scale == 1 && s$scratch_lr == 0.01) " (the seed's settings)"
            else " (the seed: MSE, lr 0.01, scale 1, fine-tuning lr 0.01 then 0.001, which do not train from scratch here; see ?experiment_settings)")
  )
}

#' Run the seed's three experiments
#'
#' Reproduces the three scenarios of the seed project (AlexNet on Kaggle
#' dogs vs cats with Keras and Theano) on a two-class task: (1) training
#' from scratch, (2) fine-tuning a pretrained network with the seed's
#' layer-wise schedule, (3) the pretrained network's `convpool_5` features
#' (256 x 6 x 6) fed to e1071 support vector machines (linear and RBF) and,
#' like the seed, to a small classifier (a 256-unit dense layer, dropout 0.5,
#' softmax). It returns the test accuracies beside the seed's (84.5%, 89%
#' and 83%) and the histories for the seed's plots.
#'
#' @section Data:
#' With `data = "fashion-mnist"` (the default), the task is Pullover vs Coat
#' from [fashion_mnist()] (Debian's `dataset-fashion-mnist`): the two
#' long-sleeved upper garments that differ in details (an opening, a collar,
#' buttons), as dogs and cats do, and the pair that a linear SVM on the raw
#' pixels separates about as badly as any (83% with 1000 + 400 images per
#' class, like Shirt vs T-shirt/top; Shirt vs Coat 86%). Nothing here was
#' trained on ImageNet, so the pretrained network of experiments 2 and 3 is
#' an AlexNet trained on the eight other classes (which include Shirt and
#' T-shirt/top, as ImageNet includes breeds of dogs and cats); it is saved
#' with [save_weights()] in `dir` and loaded with `alexnet(classes = 2,
#' weights = file)`, which keeps the new net's own `dense_3` (the seed's
#' `dense_3_new`). When `weights` names the Heuritech `alexnet_weights.h5`
#' (or any weights file), it is used instead and there is no pretraining.
#'
#' With `data = "dogs-vs-cats"`, the seed's folders are read from
#' `data_path` (default `"Data"`): `Train/cats`, `Train/dogs`, `Test/cats`,
#' `Test/dogs`, with the seed's augmentation of the training images (shear
#' 0.2, zoom 0.2, flips). Experiments 2 and 3 then need `weights` (the
#' Heuritech file); without it only experiment 1 runs.
#'
#' @section Time:
#' `size = "quick"` finishes in about 15-20 minutes on two CPU cores
#' (pretraining included); it prints what it reduced. `size = "full"` is the
#' seed's protocol and takes many hours on a CPU. `size = "tiny"` is a
#' smoke test. See [experiment_settings()].
#'
#' @param data `"fashion-mnist"` or `"dogs-vs-cats"`.
#' @param size `"quick"`, `"full"` or `"tiny"`: the preset of
#'   [experiment_settings()].
#' @param dir Folder for the results: `results.rds` (the returned object),
#'   `results.csv` (the table), `history.csv` (accuracy and loss per epoch),
#'   the plots `accuracy.png`, `scratch.png`, `finetune.png` and the
#'   pretrained weights (`pretrained.h5`, about 230 MB, reused by a later
#'   run with the same settings). `NULL` writes nothing (the pretrained
#'   weights go to a temporary file).
#' @param weights `NULL`, or a weights file (such as the Heuritech
#'   `alexnet_weights.h5`) for the pretrained network of experiments 2 and 3.
#' @param verbose Show progress.
#' @param ... Settings that change the preset: see [experiment_settings()].
#' @return An object of class `"alexnet_experiments"`: a list with `table`
#'   (a data frame: `experiment`, `method`, `test_accuracy`,
#'   `train_accuracy`, `seed_accuracy`, `seconds`), `histories` (data
#'   frames of `pretrain`, `scratch`, `finetune`, `classifier`), `settings`,
#'   `data` (a description), `timing` (seconds per step and in total) and
#'   `run` (date, machine, backend, R version, command). Its [print()]
#'   method shows the table beside the seed's, its [plot()] method draws or
#'   writes the plots.
#' @seealso [experiment_settings()], [fashion_mnist()], [alexnet_train()],
#'   [alexnet_finetune()], [alexnet_features()]
#' @export
#' @examples
#' # the results of a quick run, stored in the package
#' res <- readRDS(system.file("extdata", "experiments-quick.rds", package = "alexnet"))
#' res
#' plot(res)
#' \donttest{
#' if (file.exists("/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz")) {
#'   # a smoke test: a minute or two, meaningless accuracies
#'   tiny <- alexnet_experiments(size = "tiny", dir = NULL, verbose = FALSE)
#'   tiny
#' }
#' }
alexnet_experiments <- function(data = c("fashion-mnist", "dogs-vs-cats"),
                                size = c("quick", "full", "tiny"), dir = "alexnet-results",
                                weights = NULL, verbose = TRUE, ...) {
  data <- match.arg(data)
  size <- match.arg(size)
  s <- experiment_settings(size, ...)
  if (!requireNamespace("e1071", quietly = TRUE)) {
    abort(c("The experiments need the package {.pkg e1071} for their support vector machines.",
            i = "Install it: {.code install.packages(\"e1071\")} (Debian: {.pkg r-cran-e1071})."))
  }
  if (!is.null(dir)) {
    check_string(dir)
    dir.create(dir, recursive = TRUE, showWarnings = FALSE)
  }
  if (!is.null(weights)) {
    check_string(weights)
    if (!file.exists(weights)) abort("The weights file {.file {weights}} does not exist.")
  }
  t_start <- proc.time()[["elapsed"]]
  timing <- numeric()
  say <- function(...) if (verbose) cli::cli_inform(..., .envir = parent.frame())
  step <- function(title) if (verbose) cli::cli_h2(title)
  elapsed <- function(t0) proc.time()[["elapsed"]] - t0

  if (verbose) {
    cli::cli_h1("AlexNet: the seed's three experiments ({data}, {size})")
    what <- if (size == "full") "The seed's full protocol" else
      sprintf("A %s run: smaller sizes and fewer epochs than the seed's protocol", size)
    cli::cli_text("{.strong {what}}:")
    lines <- settings_lines(s, data)
    cli::cli_bullets(stats::setNames(lines, rep("*", length(lines))))
    cli::cli_text("Engine: {alexnet_backend()$description}.")
  }

  # --- data
  step("Data")
  t0 <- proc.time()[["elapsed"]]
  d <- experiment_data(data, s, verbose)
  timing[["data"]] <- elapsed(t0)
  labels <- levels(d$train$labels)
  say("{d$description}")

  # --- the pretrained network (stand-in for ImageNet)
  pretrain_history <- NULL
  pre_file <- weights
  pre_scale <- s$pretrain_scale
  if (!is.null(weights)) {
    info <- weights_info(weights)
    if (info$kind == "keras1") pre_scale <- 1
    say("Pretrained weights: {.file {weights}} ({info$kind} file{if (info$kind == 'keras1') ', input scale 1 as in the Heuritech model' else ''}).")
  } else if (data == "fashion-mnist") {
    step(sprintf("Pretraining on the %d other classes (stands in for the ImageNet weights)",
                 length(s$pretrain_classes)))
    t0 <- proc.time()[["elapsed"]]
    pre <- pretrain(s, dir, verbose)
    pre_file <- pre$file
    pretrain_history <- pre$history
    timing[["pretrain"]] <- elapsed(t0)
  }
  sgd_s <- function(lr) sgd(lr = lr, momentum = s$momentum, nesterov = s$nesterov, decay = s$decay)

  # --- 1. from scratch
  step("Experiment 1: training from scratch")
  t0 <- proc.time()[["elapsed"]]
  net <- alexnet(labels = labels, seed = s$seed, scale = s$scale)
  fit1 <- alexnet_train(net, d$train, validation = d$test, epochs = s$scratch_epochs,
                        batch_size = s$batch_size, optimizer = sgd_s(s$scratch_lr), loss = s$loss,
                        seed = s$seed, dropout = s$dropout, verbose = verbose)
  fit1$net <- NULL
  rm(net)
  invisible(gc(verbose = FALSE))
  timing[["scratch"]] <- elapsed(t0)
  h1 <- fit1$history
  say("From scratch: test accuracy {pct(last(h1$val_accuracy))} (train {pct(last(h1$accuracy))}) in {fmt_time(timing[['scratch']])}.")

  fit2 <- NULL
  classifier <- NULL
  svm <- NULL
  if (!is.null(pre_file)) {
    # --- 3. features of the pretrained network (before it is fine-tuned)
    step("Experiment 3: convpool_5 features of the pretrained net into classifiers")
    t0 <- proc.time()[["elapsed"]]
    net <- alexnet(labels = labels, weights = pre_file, scale = pre_scale, seed = s$seed + 1)
    feats <- extract_features(net, d, s, verbose)
    svm <- lapply(c(linear = "linear", rbf = "radial"), function(kernel) {
      t1 <- proc.time()[["elapsed"]]
      m <- e1071::svm(feats$train, d$train_labels, kernel = kernel, cost = s$svm_cost, scale = FALSE)
      acc <- c(test = mean(stats::predict(m, feats$test) == d$test_labels),
               train = mean(stats::predict(m, feats$train) == d$train_labels))
      say("SVM ({kernel}): test accuracy {pct(acc[['test']])} (train {pct(acc[['train']])}), {m$tot.nSV} support vectors, {fmt_time(elapsed(t1))}.")
      c(acc, seconds = elapsed(t1))
    })
    t1 <- proc.time()[["elapsed"]]
    classifier <- feature_classifier(feats$train, d$train_labels, feats$test, d$test_labels,
                                   units = s$mlp_units, epochs = s$mlp_epochs, lr = s$mlp_lr,
                                   batch_size = s$batch_size, seed = s$seed)
    classifier$seconds <- elapsed(t1)
    say("{s$mlp_units}-unit classifier: test accuracy {pct(last(classifier$history$val_accuracy))} (train {pct(last(classifier$history$accuracy))}), {fmt_time(classifier$seconds)}.")
    rm(feats)
    timing[["features"]] <- elapsed(t0)

    # --- 2. fine-tuning, layer by layer
    step("Experiment 2: fine-tuning the pretrained net, layer by layer")
    t0 <- proc.time()[["elapsed"]]
    schedule <- finetune_schedule(s$finetune_layers, epochs = s$finetune_epochs, lr = s$finetune_lr)
    if (verbose) print(schedule)
    fit2 <- alexnet_finetune(net, d$train, validation = d$test, schedule = schedule,
                             batch_size = s$batch_size, optimizer = sgd_s(s$finetune_lr[1L]),
                             loss = s$loss, seed = s$seed, dropout = s$dropout, verbose = verbose)
    fit2$net <- NULL
    rm(net)
    invisible(gc(verbose = FALSE))
    timing[["finetune"]] <- elapsed(t0)
    h2 <- fit2$history
    say("Fine-tuning: test accuracy {pct(last(h2$val_accuracy))} (train {pct(last(h2$accuracy))}) in {fmt_time(timing[['finetune']])}.")
  } else {
    say(c("!" = "Experiments 2 and 3 need pretrained weights: give {.arg weights} (the Heuritech {.file alexnet_weights.h5}).",
          i = "Only experiment 1 was run."))
  }
  timing[["total"]] <- elapsed(t_start)

  res <- structure(list(
    table = results_table(fit1, fit2, svm, classifier, timing, s),
    histories = list(pretrain = pretrain_history, scratch = fit1$history,
                     finetune = if (!is.null(fit2)) fit2$history,
                     classifier = if (!is.null(classifier)) classifier$history),
    settings = unclass(s),
    data = d[c("name", "classes", "n_train", "n_test", "description")],
    timing = timing,
    run = run_info(data, size, weights)
  ), class = "alexnet_experiments")

  if (!is.null(dir)) {
    saveRDS(res, file.path(dir, "results.rds"))
    utils::write.csv(res$table, file.path(dir, "results.csv"), row.names = FALSE)
    utils::write.csv(history_table(res), file.path(dir, "history.csv"), row.names = FALSE)
    pngs <- plot(res, dir = dir)
    res$files <- c(file.path(dir, c("results.rds", "results.csv", "history.csv")), pngs)
    saveRDS(res, file.path(dir, "results.rds"))
  }
  if (verbose) {
    cli::cli_h2("Results")
    print(res)
    if (!is.null(dir)) cli::cli_inform(c(v = "Wrote {.file {res$files}}."))
  }
  invisible(res)
}

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

run_info <- function(data, size, weights) {
  info <- tryCatch(readLines("/proc/cpuinfo", warn = FALSE), error = function(e) character(),
                   warning = function(w) character())
  model <- grep("^model name", info, value = TRUE)
  cpu <- if (length(model)) sub("^model name\\s*:\\s*", "", model[1L]) else NA_character_
  cores <- sum(grepl("^processor", info))
  args <- commandArgs(trailingOnly = FALSE)
  list(date = format(Sys.time(), "%Y-%m-%d %H:%M:%S %Z"), data = data, size = size,
       weights = weights, machine = Sys.info()[["nodename"]], cpu = cpu,
       cores = cores, threads = alexnet_threads(), backend = alexnet_backend()$description,
       r = R.version.string, alexnet = as.character(utils::packageVersion("alexnet")),
       command = getOption("alexnet.experiments_command", paste(args, collapse = " ")))
}

# ---- data

experiment_data <- function(data, s, verbose, call = caller_env()) {
  if (data == "fashion-mnist") {
    train <- fashion_mnist("train", classes = s$classes, n_per_class = s$n_train, seed = s$seed)
    test <- fashion_mnist("test", classes = s$classes, n_per_class = s$n_test, seed = s$seed)
    desc <- sprintf("Fashion-MNIST %s vs %s: %d training and %d test images (28 x 28 grey, resized to 227 x 227 RGB).",
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
  train <- image_folder(file.path(path, "Train"), size = 227, augment = aug)
  plain <- image_folder(file.path(path, "Train"), size = 227)
  test <- image_folder(file.path(path, "Test"), size = 227)
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
             "pretrain_scale", "batch_size", "momentum", "nesterov", "decay", "dropout", "seed")]
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
  net <- alexnet(labels = s$pretrain_classes, seed = s$seed + 100, scale = s$pretrain_scale)
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

# ---- experiment 3: features and classifiers


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

# ---- results

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
                if (x$data$name == "Fashion-MNIST") sprintf(", pretraining on %d images per class for %s", st$pretrain_n, plural(st$pretrain_epochs, "epoch")) else ""))
  }
  cat("The seed reports one number for its features (83%): a small 256-unit classifier on convpool_5 (an SVM being its alternative).\n")
  if (!identical(x$settings$loss, "mse") || x$settings$scale != 1) {
    cat(sprintf("Optimiser: %s loss, input scale %s, lr %g from scratch, fine-tuning lr %g then %g\n(the seed: MSE, scale 1, lr 0.01, fine-tuning 0.01 then 0.001; from scratch those stay at chance here).\n",
                x$settings$loss, fmt_scale(x$settings$scale), x$settings$scratch_lr,
                x$settings$finetune_lr[1L], x$settings$finetune_lr[min(2L, length(x$settings$finetune_lr))]))
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
