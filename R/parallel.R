# Features of many images over many workers (the future framework), into a
# folder of HDF5 files: alexnet_features_h5(), read_features(). The files
# are written atomically by the engine (src/engine/h5features.c through
# src/r_h5features.c); the format is described in ?alexnet_features_h5.

.h5f_format <- "alexnet_features"
.h5f_chunk_format <- "alexnet_features_chunk"
.h5f_version <- 1L
.h5f_manifest <- "features.h5"

#' Features of many images over many workers, into HDF5 files
#'
#' Computes the features of a large collection of JPEG files with whatever
#' [future::plan()] is set: `sequential` (one R session), `multisession`
#' (R sessions on this machine), `cluster`, or a scheduler (Slurm, SGE, ...)
#' through `future.batchtools`. The images are split into chunks of
#' `chunk_size`; each worker loads the network from the weights **file**
#' itself, computes the features of its chunks with [alexnet_features()]
#' and writes each chunk to its own HDF5 file in the folder `output`. The
#' rows never pass through this R session, so the result may be larger than
#' its memory; [read_features()] reads it back, whole or chunk by chunk.
#'
#' @section Resuming:
#' Each chunk file is written to a temporary file and renamed into place only
#' when complete, so a chunk is either there in full or not at all. Running
#' the same call again after a failed run, an interrupt or a killed worker
#' computes only the chunks that are missing; nothing already written is
#' computed again or lost. The folder records what it was made from (the
#' files, their labels and reading options, the layer, the chunk size and the
#' MD5 digest of the weights file): a call with other inputs for an existing
#' `output` is refused (delete the folder, or use another, to start afresh).
#' Do not run two calls on the same `output` at the same time.
#'
#' @section Workers:
#' The work is split into one task per worker ([future::nbrOfWorkers()],
#' at most one per missing chunk); each task loads the network once and
#' computes its chunks in turn. Workers must be able to load this package
#' and read the weights and image files under the same paths (on a cluster:
#' a shared file system). On the CPU, each worker uses `threads` threads:
#' by default [future::availableCores()] divided by the number of workers
#' when the plan runs on this machine (`sequential`, `multisession`,
#' `multicore`, `cluster` of local workers), else what
#' [future::availableCores()] says inside the worker (it follows the
#' allocation of Slurm, SGE, PBS and others). With `device = "auto"`, task
#' `k` of a machine with `G` GPUs uses GPU `(k - 1) %% G` (`"cuda:0"`,
#' `"cuda:1"`, ...), and the CPU where there is none; any other `device` is
#' used by every task.
#'
#' @section The files:
#' `output` is a folder holding `features.h5`, which describes the run (root
#' attributes `format` = `"alexnet_features"`, `format_version` = 1, `layer`,
#' `n_images`, `chunk_size`, `n_chunks`, `weights` (the file's path),
#' `weights_md5`, `resize`, `on_error`, `run_id`; datasets `files` (the
#' image paths, UTF-8 strings) and, with labels, `labels` (1-based integer
#' codes) and `levels`), and one file per chunk, `chunk-000001.h5`, ...,
#' with the attributes `format` = `"alexnet_features_chunk"`, `run_id`,
#' `chunk`, `first` (the row of its first image, from 1) and `rows`, the
#' float32 dataset `features` (`rows` x features, one row per image, as
#' h5py shows it) and `failed` (1 for images that could not be read, whose
#' row is `NA`, with `on_error = "skip"`). The features are the engine's
#' single-precision values, so they read back exactly as
#' [alexnet_features()] gives them. Other tools (h5py, rhdf5) read the files
#' as they are.
#'
#' @param weights An HDF5 weights file, as written by [save_weights()] (or
#'   a Keras 1 file: see [alexnet()]). Every worker loads it with
#'   `alexnet(weights = weights, device = device)`.
#' @param x The images: an [image_folder()] or [image_files()] (their
#'   `resize` and `on_error` options are used; `augment` is not), or a
#'   character vector of JPEG files.
#' @param output A folder for the results: created if missing; an existing
#'   one must come from the same call (see Resuming).
#' @param layer The layer whose activations are returned; one of
#'   [alexnet_layers()].
#' @param chunk_size Number of images per chunk: the unit of work, of
#'   resuming and of reading back (a chunk of `convpool_5` features takes
#'   `chunk_size` x 9216 x 4 bytes on disk and twice that in memory). It is
#'   part of what the folder records.
#' @param batch_size Images run through the network at once, as in
#'   [alexnet_features()].
#' @param device `"auto"` (the default), `"cpu"`, `"cuda"` or `"cuda:N"`:
#'   see Workers.
#' @param threads `NULL` (see Workers) or the number of CPU threads of each
#'   worker.
#' @return An object of class `"alexnet_features_h5"` describing `output`:
#'   a list with `path`, `layer`, `n_images`, `n_features`, `chunk_size`,
#'   `n_chunks`, `done` (whether each chunk is written), `computed` (the
#'   chunks computed by this call), `labels` (a factor or `NULL`) and
#'   `weights`. Give it (or the folder) to [read_features()], or to
#'   [as.matrix()].
#' @seealso [read_features()], [alexnet_features()]
#' @export
#' @examples
#' \dontrun{
#' images <- image_folder("data/images")       # one sub-folder per class
#' save_weights(net, "net.h5")                  # or the Heuritech alexnet_weights.h5
#' future::plan("multisession", workers = 4)   # or "sequential", "batchtools_slurm", ...
#' out <- alexnet_features_h5("net.h5", images, "features", chunk_size = 512)
#' out                                          # run it again after a failure: only
#'                                              # the missing chunks are computed
#' f <- read_features(out)                      # the matrix, e.g. for e1071::svm()
#' keep <- apply(f, 2, sd) > 0                 # constant columns cannot be scaled
#' fit <- e1071::svm(f[, keep], attr(f, "labels"), kernel = "linear")
#' for (k in seq_len(out$n_chunks)) {           # or chunk by chunk
#'   part <- read_features(out, chunk = k)
#' }
#' }
alexnet_features_h5 <- function(weights, x, output, layer = "convpool_5", chunk_size = 256,
                                batch_size = 32, device = "auto", threads = NULL) {
  need_future()
  check_string(weights)
  if (!file.exists(weights) || dir.exists(weights)) {
    abort("The weights file {.file {weights}} does not exist.")
  }
  weights <- normalizePath(weights, mustWork = TRUE)
  if (is.character(x)) {
    x <- image_files(x)
  } else if (!inherits(x, "image_folder")) {
    abort(c("{.arg x} must be an {.fn image_folder}, {.fn image_files} or a character vector of JPEG files, not {.obj_type_friendly {x}}.",
            i = "Arrays of pixels fit in memory: use {.fn alexnet_features}."))
  }
  check_string(output)
  layer <- check_layer(layer, weights_file_info(weights)$arch)
  chunk_size <- check_count(chunk_size)
  batch_size <- check_count(batch_size)
  if (!is.character(device) || length(device) != 1L || is.na(device)) {
    abort("{.arg device} must be {.val auto}, {.val cpu}, {.val cuda} or {.val cuda:N}.")
  }
  if (!is.null(threads)) threads <- check_count(threads)

  run <- h5f_run(x, weights, layer, chunk_size)
  output <- h5f_prepare(output, run)
  done <- h5f_done(output, run$run_id, run$n_chunks)
  missing <- which(!done)
  computed <- integer()
  if (length(missing) > 0L) {
    workers <- future::nbrOfWorkers()
    n_tasks <- max(1L, min(length(missing), if (is.finite(workers)) as.integer(workers) else length(missing)))
    if (is.null(threads) && h5f_local_plan()) {
      threads <- max(1L, as.integer(future::availableCores()) %/% n_tasks)
    }
    tasks <- split(missing, rep_len(seq_len(n_tasks), length(missing)))
    specs <- lapply(seq_along(tasks), function(t) {
      k <- tasks[[t]]
      list(task = t, chunks = k, first = vapply(k, function(j) h5f_rows(j, run)[1L], integer(1)),
           images = lapply(k, function(j) x[h5f_rows(j, run)]))
    })
    args <- list(output = output, weights = weights, md5 = run$weights_md5, run_id = run$run_id,
                 layer = layer, batch_size = batch_size, device = device, threads = threads)
    # one future per task; every task runs to its end (or its error) before
    # this call reports, so a failing worker does not stop the others
    fs <- lapply(specs, function(spec) {
      future::future(quote(do.call(worker, c(list(spec), args))), substitute = FALSE,
                     globals = list(worker = h5f_worker, spec = spec, args = args),
                     packages = "alexnet", seed = NULL)
    })
    res <- lapply(fs, function(f) tryCatch(future::value(f), error = function(e) e))
    failed <- Filter(function(r) inherits(r, "error"), res)
    if (length(failed)) {
      left <- sum(!h5f_done(output, run$run_id, run$n_chunks))
      msgs <- utils::head(vapply(failed, conditionMessage, character(1)), 3L)
      abort(c("Feature extraction stopped: {left} of {run$n_chunks} chunk{?s} {cli::qty(left)}{?is/are} still missing in {.file {output}}.",
              i = "Run the same call again to compute only the missing chunks.",
              set_names_bullets(sprintf("{msgs[[%d]]}", seq_along(msgs)), "x")))
    }
    computed <- sort(unlist(lapply(res, `[[`, "computed"), use.names = FALSE))
  }
  out <- read_state(output)
  out$computed <- as.integer(computed)
  out
}

need_future <- function(call = caller_env()) {
  for (pkg in "future") {
    if (!requireNamespace(pkg, quietly = TRUE)) {
      abort(c("Features over many workers need the package {.pkg {pkg}}.",
              i = "Install it with {.code install.packages(\"{pkg}\")} (Debian: {.code apt install r-cran-{tolower(pkg)}})."),
            call = call)
    }
  }
}

# The plan runs its workers on this machine (so they share its cores).
h5f_local_plan <- function() {
  inherits(future::plan(), c("sequential", "uniprocess", "multisession", "multicore"))
}

# What the folder records of a call; run_id is the digest of all of it.
h5f_run <- function(x, weights, layer, chunk_size) {
  n <- length(x)
  run <- list(
    format = .h5f_format, format_version = .h5f_version, layer = layer,
    n_images = as.integer(n), chunk_size = chunk_size,
    n_chunks = as.integer(ceiling(n / chunk_size)),
    weights = weights, weights_md5 = unname(tools::md5sum(weights)),
    resize = x$resize, on_error = x$on_error, size = arch_facts(weights_file_info(weights)$arch)$input_size,
    files = x$files,
    labels = if (!is.null(x$labels)) as.integer(x$labels),
    levels = if (!is.null(x$labels)) levels(x$labels)
  )
  # the weights' path may change (a shared file system mounted elsewhere); its digest may not
  run$run_id <- rlang::hash(run[setdiff(names(run), "weights")])
  run
}

h5f_rows <- function(k, run) {
  seq.int((k - 1L) * run$chunk_size + 1L, min(k * run$chunk_size, run$n_images))
}

h5f_chunk_path <- function(output, k) file.path(output, sprintf("chunk-%06d.h5", k))

# Create `output`, or check that it comes from the same inputs; writes the manifest.
h5f_prepare <- function(output, run, call = caller_env()) {
  output <- path.expand(output)
  manifest <- file.path(output, .h5f_manifest)
  if (file.exists(output) && !dir.exists(output)) {
    abort("{.arg output} must be a folder, but {.file {output}} is a file.", call = call)
  }
  if (dir.exists(output) && file.exists(manifest)) {
    old <- h5f_read(manifest, call = call)
    h5f_same_run(old, run, output, call = call)
  } else {
    if (dir.exists(output) && length(setdiff(list.files(output, all.files = TRUE, no.. = TRUE),
                                             list.files(output, pattern = "\\.tmp-[0-9]+$")))) {
      abort(c("The folder {.file {output}} is not empty and has no {.file {(.h5f_manifest)}}.",
              i = "Give a new or empty folder as {.arg output}."), call = call)
    }
    dir.create(output, recursive = TRUE, showWarnings = FALSE)
    if (!dir.exists(output)) abort("Cannot create the folder {.file {output}}.", call = call)
    h5f_write(manifest, c(run, list(created = format(Sys.time(), "%Y-%m-%d %H:%M:%S %z"),
                                    package_version = as.character(utils::packageVersion("alexnet")))),
              call = call)
  }
  # temporary files of killed writers
  stale <- list.files(output, pattern = "\\.tmp-[0-9]+$", full.names = TRUE)
  if (length(stale)) unlink(stale)
  normalizePath(output)
}

h5f_same_run <- function(old, run, output, call = caller_env()) {
  if (!identical(old$format, .h5f_format) || !identical(as.integer(old$format_version), .h5f_version)) {
    abort("{.file {file.path(output, .h5f_manifest)}} is not a features file of this version of alexnet.",
          call = call)
  }
  if (identical(old$run_id, run$run_id)) {
    return(invisible())
  }
  what <- c(layer = "the layer", chunk_size = "the chunk size", n_images = "the number of images",
            files = "the image files", labels = "the labels", levels = "the label levels",
            weights_md5 = "the weights (their MD5 digest)", resize = "the resize option",
            on_error = "the on_error option", size = "the image size")
  differ <- names(what)[!vapply(names(what), function(f) {
    a <- old[[f]]
    b <- run[[f]]
    (is.null(a) && is.null(b)) || (!is.null(a) && !is.null(b) && length(a) == length(b) && all(a == b))
  }, logical(1))]
  if (!length(differ)) differ <- "run_id"
  details <- vapply(differ, function(f) {
    a <- old[[f]]
    b <- run[[f]]
    if (length(a) == 1L && length(b) == 1L) sprintf("%s: %s in the folder, %s now", what[[f]], a, b)
    else if (f %in% names(what)) what[[f]] else "the inputs"
  }, character(1))
  abort(c("The folder {.file {output}} holds features of other inputs.",
          set_names_bullets(details, "x"),
          i = "Use another {.arg output}, or delete it ({.code unlink(\"{output}\", recursive = TRUE)}) to start afresh."),
        call = call)
}

set_names_bullets <- function(x, bullet) stats::setNames(as.character(x), rep(bullet, length(x)))

h5f_write <- function(path, values, call = caller_env()) {
  invisible(engine(.Call(C_h5f_write, enc2native(path), values), call = call))
}

h5f_read <- function(path, names = NULL, call = caller_env()) {
  engine(.Call(C_h5f_read, enc2native(path), names), call = call)
}

# Which chunks are written (and are of this run).
h5f_done <- function(output, run_id, n_chunks) {
  vapply(seq_len(n_chunks), function(k) {
    path <- h5f_chunk_path(output, k)
    file.exists(path) && h5f_chunk_ok(path, run_id, k)
  }, logical(1))
}

h5f_chunk_ok <- function(path, run_id, k) {
  v <- tryCatch(.Call(C_h5f_read, enc2native(path), c("format", "run_id", "chunk")),
                error = function(e) NULL)
  !is.null(v) && identical(v$format, .h5f_chunk_format) && identical(v$run_id, run_id) &&
    identical(as.integer(v$chunk), as.integer(k))
}

# One task, in a worker: load the net from the file, compute and write its chunks.
h5f_worker <- function(spec, output, weights, md5, run_id, layer, batch_size, device, threads) {
  if (!identical(unname(tools::md5sum(weights)), md5)) {
    abort("The weights file {.file {weights}} changed (or is not the same file on this worker): its MD5 digest differs.")
  }
  if (is.null(threads)) threads <- max(1L, as.integer(future::availableCores()))
  if (threads != alexnet_threads()) {
    old <- alexnet_threads(threads)
    on.exit(alexnet_threads(old), add = TRUE)
  }
  if (identical(device, "auto")) {
    gpus <- length(.Call(C_cuda_info)$devices)
    device <- if (gpus > 0L) sprintf("cuda:%d", (spec$task - 1L) %% gpus) else "cpu"
  }
  net <- alexnet(weights = weights, device = device, seed = 0)
  on.exit({
    rm(net)
    gc(verbose = FALSE)
  }, add = TRUE, after = FALSE)
  computed <- integer()
  for (i in seq_along(spec$chunks)) {
    k <- spec$chunks[[i]]
    path <- h5f_chunk_path(output, k)
    if (file.exists(path) && h5f_chunk_ok(path, run_id, k)) next
    images <- spec$images[[i]]
    t0 <- proc.time()[["elapsed"]]
    f <- alexnet_features(net, images, layer = layer, batch_size = batch_size)
    failed <- as.integer(rowSums(is.na(f)) == ncol(f))
    attr(f, "labels") <- NULL
    h5f_write(path, list(
      format = .h5f_chunk_format, format_version = .h5f_version, run_id = run_id,
      chunk = as.integer(k), first = as.integer(spec$first[[i]]),
      rows = nrow(f), layer = layer, features = f, failed = failed,
      device = net$device, threads = alexnet_threads(), seconds = proc.time()[["elapsed"]] - t0,
      host = Sys.info()[["nodename"]], pid = Sys.getpid()
    ))
    computed <- c(computed, as.integer(k))
  }
  list(task = spec$task, computed = computed, device = net$device, pid = Sys.getpid())
}

# The object describing a folder: its manifest and which chunks are written.
read_state <- function(output, call = caller_env()) {
  if (inherits(output, "alexnet_features_h5")) output <- output$path
  check_string(output, arg = "output", call = call)
  manifest <- file.path(path.expand(output), .h5f_manifest)
  if (!file.exists(manifest)) {
    abort("{.file {output}} is not a folder of features made by {.fn alexnet_features_h5} (no {.file {(.h5f_manifest)}}).",
          call = call)
  }
  m <- h5f_read(manifest, c("format", "format_version", "layer", "n_images", "chunk_size", "n_chunks",
                            "weights", "weights_md5", "run_id", "files", "labels", "levels"),
                call = call)
  if (!identical(m$format, .h5f_format) || !identical(as.integer(m$format_version), .h5f_version)) {
    abort("{.file {manifest}} is not a features file of this version of alexnet.", call = call)
  }
  path <- normalizePath(output)
  done <- h5f_done(path, m$run_id, m$n_chunks)
  p <- NA_integer_
  if (any(done)) {
    first <- h5f_chunk_path(path, which(done)[1L])
    p <- ncol(h5f_read(first, "features", call = call)$features)
  }
  labels <- if (!is.null(m$labels)) factor(m$levels[m$labels], levels = m$levels)
  structure(list(path = path, layer = m$layer, n_images = m$n_images, n_features = p,
                 chunk_size = m$chunk_size, n_chunks = m$n_chunks, done = done,
                 computed = integer(), labels = labels, weights = m$weights,
                 weights_md5 = m$weights_md5, run_id = m$run_id, files = m$files),
            class = "alexnet_features_h5")
}

#' Read features written by alexnet_features_h5()
#'
#' Reads the features of a folder made by [alexnet_features_h5()] back into
#' R: all of them as one matrix (as [alexnet_features()] returns it, for
#' example for [e1071::svm()]), or the rows of one chunk, so that a result
#' larger than memory can be processed piece by piece.
#'
#' @param output The folder, or the object returned by
#'   [alexnet_features_h5()] (then the folder is not scanned for every
#'   call, which keeps reading many chunks one by one cheap; each chunk read
#'   is still checked to belong to the run).
#' @param chunk `NULL` (all rows) or the number of one chunk (from 1 to
#'   `n_chunks`).
#' @return A numeric matrix, one row per image in the order of the files
#'   given to [alexnet_features_h5()] (`NA` rows for images that could not
#'   be read); with labels, they are in the attribute `"labels"` (a factor).
#'   For a chunk, the attribute `"rows"` holds the row numbers of its images
#'   among all of them.
#' @seealso [alexnet_features_h5()]
#' @export
read_features <- function(output, chunk = NULL) {
  # the object of alexnet_features_h5() is used as it is, so that reading
  # chunk by chunk does not look at every chunk file each time; a folder is
  # scanned. Each chunk read is checked to be of the run.
  st <- if (inherits(output, "alexnet_features_h5")) output else read_state(output)
  if (!is.null(chunk)) {
    chunk <- check_count(chunk)
    if (chunk > st$n_chunks) {
      abort("{.arg chunk} is {chunk}, but {.file {st$path}} has {st$n_chunks} chunk{?s}.")
    }
    if (!h5f_chunk_ok(h5f_chunk_path(st$path, chunk), st$run_id, chunk)) {
      abort(c("Chunk {chunk} of {.file {st$path}} is not written yet.",
              i = "Run {.fn alexnet_features_h5} again to compute the missing chunks."))
    }
    rows <- h5f_rows(chunk, st)
    f <- read_chunk(st, chunk, length(rows))
    if (!is.null(st$labels)) attr(f, "labels") <- st$labels[rows]
    attr(f, "rows") <- rows
    return(f)
  }
  done <- file.exists(h5f_chunk_path(st$path, seq_len(st$n_chunks)))
  if (!all(done)) {
    left <- sum(!done)
    abort(c("{left} of {st$n_chunks} chunk{?s} of {.file {st$path}} {cli::qty(left)}{?is/are} not written yet.",
            i = "Run {.fn alexnet_features_h5} again to compute only the missing chunks."))
  }
  out <- NULL
  for (k in seq_len(st$n_chunks)) {
    rows <- h5f_rows(k, st)
    f <- read_chunk(st, k, length(rows))
    if (is.null(out)) out <- matrix(NA_real_, st$n_images, ncol(f))
    out[rows, ] <- f
  }
  if (!is.null(st$labels)) attr(out, "labels") <- st$labels
  out
}

read_chunk <- function(st, k, n_rows, call = caller_env()) {
  path <- h5f_chunk_path(st$path, k)
  v <- h5f_read(path, c("features", "failed", "run_id", "chunk"), call = call)
  if (!identical(v$run_id, st$run_id) || !identical(as.integer(v$chunk), as.integer(k))) {
    abort(c("{.file {path}} is not chunk {k} of this run.",
            i = "Run {.fn alexnet_features_h5} again to compute it anew."), call = call)
  }
  f <- v$features
  p <- if (is.na(st$n_features)) NCOL(f) else st$n_features
  if (!is.matrix(f) || nrow(f) != n_rows || ncol(f) != p) {
    abort("Chunk {k} of {.file {st$path}} has {NROW(f)} x {NCOL(f)} features, not {n_rows} x {p}.",
          call = call)
  }
  failed <- which(v$failed == 1L)
  if (length(failed)) f[failed, ] <- NA_real_
  f
}

#' @export
as.matrix.alexnet_features_h5 <- function(x, ...) read_features(x)

#' @export
print.alexnet_features_h5 <- function(x, ...) {
  cat(sprintf("<alexnet_features_h5> %s\n", x$path))
  cat(sprintf("%d image%s x %s feature%s of layer %s\n", x$n_images, if (x$n_images == 1L) "" else "s",
              if (is.na(x$n_features)) "?" else format(x$n_features),
              if (identical(x$n_features, 1L)) "" else "s", x$layer))
  cat(sprintf("%d chunk%s of %d: %d written%s\n", x$n_chunks, if (x$n_chunks == 1L) "" else "s",
              x$chunk_size, sum(x$done),
              if (length(x$computed)) sprintf(" (%d computed by this call)", length(x$computed)) else ""))
  cat(sprintf("weights: %s (MD5 %s)\n", x$weights, x$weights_md5))
  if (!is.null(x$labels)) {
    tab <- table(x$labels)
    cat(sprintf("classes: %s\n", paste(sprintf("%s (%d)", names(tab), as.integer(tab)), collapse = ", ")))
  }
  invisible(x)
}
