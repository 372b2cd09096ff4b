# R side of bench_foreign.sh: loading foreign AlexNet weights through the
# user's call, alexnet(weights = FILE).
#
#   Rscript bench_foreign.R time ROUTE FILE   one timed alexnet(weights = FILE) in this process
#   Rscript bench_foreign.R load ROUTE ARCH FILE   one timed load_weights(net, FILE) into
#                                             an existing alexnet(arch = ARCH) (the load alone)
#   Rscript bench_foreign.R info ROUTE FILE   one timed weights_info(FILE)
#   Rscript bench_foreign.R create            one timed alexnet(arch = "torchvision") (no file)
#   Rscript bench_foreign.R baseline          library(alexnet) only (for RSS)
#   Rscript bench_foreign.R save_h5 PTH H5    save_weights() of the net loaded from PTH
#   Rscript bench_foreign.R check DIR         features of the loaded nets against PyTorch's
#
# Each timed command prints one JSON line.
suppressPackageStartupMessages(library(alexnet))
args <- commandArgs(trailingOnly = TRUE)

json_line <- function(route, st) {
  cat(sprintf('{"route": "%s", "total_s": %.6f, "cpu_s": %.6f}\n', route,
              st[["elapsed"]], st[["user.self"]] + st[["sys.self"]]))
}

all_loaded <- function(net) {
  rep <- attr(net, "weights_report")
  !is.null(rep) && all(rep$status == "loaded")
}

switch(args[1],
  time = {
    st <- system.time(net <- alexnet(weights = args[3]))
    stopifnot(all_loaded(net))
    json_line(args[2], st)
  },
  load = {
    # load_weights() into an existing net of the file's variant (the load alone)
    net <- alexnet(arch = args[3], seed = 1)
    st <- system.time(net <- load_weights(net, args[4]))
    stopifnot(all_loaded(net))
    json_line(args[2], st)
  },
  info = {
    # weights_info(FILE): the look at the file alexnet(weights = ) makes before creating the net
    st <- system.time(info <- weights_info(args[3]))
    json_line(args[2], st)
  },
  create = {
    st <- system.time(net <- alexnet(arch = "torchvision", seed = 1))
    json_line("r_create", st)
  },
  baseline = {
    cat('{"route": "r_baseline"}\n')
  },
  save_h5 = {
    net <- alexnet(weights = args[2])
    save_weights(net, args[3])
    cat(sprintf("# h5 file %s: %.1f MB (save_weights of the net loaded from %s)\n",
                args[3], file.size(args[3]) / 1e6, args[2]))
  },
  check = {
    dir <- args[2]
    px <- readBin(file.path(dir, "image.u8"), "raw", n = 224 * 224 * 3)
    x <- array(as.numeric(as.integer(px)), dim = c(1, 224, 224, 3))
    ref <- readBin(file.path(dir, "features.f32"), "double", n = 9216, size = 4, endian = "little")
    cmp <- function(what, file) {
      net <- alexnet(weights = file)
      f <- alexnet_features(net, x, layer = "convpool_5")
      stopifnot(length(f) == 9216)
      rel <- max(abs(f[1, ] - ref)) / max(abs(ref))
      ok <- rel < 1e-4 && all_loaded(net)
      cat(sprintf("# check %s: arch %s, %d of %d layers loaded; convpool_5 vs PyTorch model.features: max|diff|/max|ref| = %.2e (max|ref| = %.4g, %d nonzero), %s\n",
                  what, net$arch, sum(attr(net, "weights_report")$status == "loaded"),
                  nrow(attr(net, "weights_report")), rel, max(abs(ref)), sum(ref != 0),
                  if (ok) "PASS" else "FAIL"))
      ok
    }
    ok <- cmp("torchvision .pth", file.path(dir, "alexnet.pth"))
    ok <- cmp("package .h5 (saved from the .pth net)", file.path(dir, "alexnet.h5")) && ok
    net <- alexnet(weights = file.path(dir, "alexnet.caffemodel"))
    rep <- attr(net, "weights_report")
    cok <- all_loaded(net) && net$arch == "caffe"
    cat(sprintf("# check caffemodel: arch %s, %d of %d layers loaded, %s\n", net$arch,
                sum(rep$status == "loaded"), nrow(rep), if (cok) "PASS" else "FAIL"))
    if (!(ok && cok)) quit(status = 1)
  },
  stop("unknown command ", args[1])
)
