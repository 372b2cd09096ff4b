# The seed's three experiments (training from scratch, layer-wise
# fine-tuning, convpool_5 features into classifiers), run end to end on
# Fashion-MNIST (or the seed's dogs-vs-cats folders), with a results table
# beside the seed's numbers and its plots.
#
# This file runs them: alexnet_experiments() and what it records about the
# run. The settings are in experiments-settings.R, the data and the
# pretraining in experiments-data.R, experiment 3 in experiments-features.R
# and the results table, printing and plots in experiments-report.R.

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
#' @param weights `NULL`, or a weights file for the pretrained network of
#'   experiments 2 and 3, in any format [alexnet()] reads: the Heuritech
#'   `alexnet_weights.h5`, Caffe's `bvlc_alexnet.caffemodel`, torchvision's
#'   `alexnet-owt-7be5be79.pth` or a file of [save_weights()]. The file sets
#'   the variant and its input convention.
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
  if (s$precision == "bf16") {
    # one message for the run, not one per network
    why <- .Call(C_bf16_missing, -1L)
    if (!is.null(why)) {
      inform_bf16_missing(why, "the experiments compute")
      s$precision <- "f32"
    }
  }
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
    cli::cli_text("Engine: {alexnet_backend()$cpu}.")
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
    # any format (the package's, Keras 1, Caffe, torchvision): the file sets
    # the variant and the input convention
    info <- weights_info(weights)
    pre_scale <- NULL
    say("Pretrained weights: {.file {weights}} ({info$kind} file, the {info$arch} AlexNet).")
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
  net <- alexnet(labels = labels, seed = s$seed, scale = s$scale, precision = s$precision)
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
  gradcam_file <- NULL
  classifier <- NULL
  svm <- NULL
  if (!is.null(pre_file)) {
    # --- 3. features of the pretrained network (before it is fine-tuned)
    step("Experiment 3: convpool_5 features of the pretrained net into classifiers")
    t0 <- proc.time()[["elapsed"]]
    net <- alexnet(labels = labels, weights = pre_file, scale = pre_scale, seed = s$seed + 1,
                   precision = s$precision)
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
    if (!is.null(dir)) gradcam_file <- gradcam_picture(net, d, file.path(dir, "gradcam.png"))
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
    res$files <- c(file.path(dir, c("results.rds", "results.csv", "history.csv")), pngs, gradcam_file)
    saveRDS(res, file.path(dir, "results.rds"))
  }
  if (verbose) {
    cli::cli_h2("Results")
    print(res)
    if (!is.null(dir)) cli::cli_inform(c(v = "Wrote {.file {res$files}}."))
  }
  invisible(res)
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
       cores = cores, threads = alexnet_threads(), backend = alexnet_backend()$cpu,
       r = R.version.string, alexnet = as.character(utils::packageVersion("alexnet")),
       command = getOption("alexnet.experiments_command", paste(args, collapse = " ")))
}
