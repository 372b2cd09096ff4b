#!/usr/bin/env Rscript
# The seed's three experiments in one command (see ?alexnet_experiments).
#
#   Rscript run.R [options]
#
#   --quick              the default: about 6 minutes on two CPU cores
#   --full               the seed's protocol (1000 + 400 images per class,
#                        80 epochs, 8 x 10 fine-tuning epochs): hours on a CPU
#   --tiny               a smoke test of under a minute (meaningless accuracies)
#   --data=NAME          fashion-mnist (default) or dogs-vs-cats
#   --data-path=DIR      the dogs-vs-cats folder with Train/ and Test/ (default Data)
#   --dir=DIR            where the results go (default alexnet-results)
#   --weights=FILE       pretrained weights in any format alexnet() reads: the Heuritech
#                        alexnet_weights.h5, bvlc_alexnet.caffemodel, alexnet-owt-7be5be79.pth
#                        instead of pretraining on the other Fashion-MNIST classes
#   --seed-settings      the seed's own loss and optimiser (MSE, lr 0.01, input
#                        scale 1, fine-tuning lr 0.01 then 0.001), which do
#                        not train from scratch here (see ?experiment_settings)
#   --threads=N          CPU threads of the engine (default: all cores)
#   --precision=bf16     the convolutions in bfloat16, where the CPU has
#                        AVX512_BF16 (see ?alexnet_precision): the quick run
#                        takes 4.5 instead of 6 minutes
#   --SETTING=VALUE      any setting of experiment_settings(), e.g.
#                        --n_train=500 --scratch_epochs=20 --classes=Shirt,T-shirt/top
#   --help               this text

args <- commandArgs(trailingOnly = TRUE)
usage <- function() {
  file <- sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE))
  lines <- if (length(file)) readLines(file[1L]) else character()
  cat(sub("^# ?", "", lines[seq(2L, max(2L, which(!grepl("^#", lines))[1L] - 1L))]), sep = "\n")
}
if (any(args %in% c("-h", "--help"))) {
  usage()
  quit(status = 0)
}
suppressPackageStartupMessages(library(alexnet))

size <- "quick"
opts <- list(data = "fashion-mnist", dir = "alexnet-results", weights = NULL)
settings <- list()
known <- names(experiment_settings("quick"))
parse_value <- function(v) {
  if (grepl(",", v)) return(strsplit(v, ",", fixed = TRUE)[[1L]])
  if (v %in% c("TRUE", "true", "yes")) return(TRUE)
  if (v %in% c("FALSE", "false", "no")) return(FALSE)
  num <- suppressWarnings(as.numeric(v))
  if (!is.na(num)) return(num)
  if (grepl("^1/[0-9.]+$", v)) return(1 / as.numeric(sub("^1/", "", v)))
  v
}
for (a in args) {
  if (a %in% c("--full", "--quick", "--tiny")) {
    size <- sub("^--", "", a)
  } else if (a == "--seed-settings") {
    settings[c("loss", "scratch_lr", "scale")] <- list("mse", 0.01, 1)
  } else if (grepl("^--[A-Za-z_-]+=", a)) {
    key <- sub("^--([^=]+)=.*$", "\\1", a)
    value <- sub("^--[^=]+=", "", a)
    if (key %in% c("data", "dir", "weights")) {
      opts[[key]] <- value
    } else if (key == "threads") {
      alexnet_threads(as.integer(value))
    } else if (gsub("-", "_", key) %in% known) {
      settings[[gsub("-", "_", key)]] <- parse_value(value)
    } else {
      message("unknown option: ", a, "\n")
      usage()
      quit(status = 2)
    }
  } else {
    message("unknown option: ", a, "\n")
    usage()
    quit(status = 2)
  }
}
if (!requireNamespace("e1071", quietly = TRUE)) {
  stop("the experiments need the R package e1071 (Debian: r-cran-e1071)")
}
command <- Sys.getenv("ALEXNET_COMMAND", paste(c("Rscript inst/experiments/run.R", args), collapse = " "))
options(alexnet.experiments_command = trimws(command))
res <- do.call(alexnet_experiments, c(list(data = opts$data, size = size, dir = opts$dir,
                                           weights = opts$weights, verbose = TRUE), settings))
cat("\nResults:", normalizePath(opts$dir), "\n")
cat(paste0("  ", res$files, "\n"), sep = "")
