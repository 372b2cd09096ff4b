# Features over many workers: alexnet_features_h5() under future plans,
# resuming after failures, refusing other inputs, reading back.
#
# Bits: the engine's results depend on the batch composition and may depend
# on the number of threads (oneDNN picks its algorithms by shape), so the
# in-session reference runs the same batches (batch_size = chunk_size = 3)
# on 1 thread, as every worker does here; then the results are identical.

skip_if_not_installed("future")

par_write_jpeg <- function(path, phase) {
  h <- 40 + 4 * (phase %% 3)
  w <- 48
  y <- matrix(seq(0, 1, length.out = h), h, w)
  x <- matrix(seq(0, 1, length.out = w), h, w, byrow = TRUE)
  px <- round(array(c(40 + 180 * x, 30 + 190 * y, 128 + 100 * sin(2 * pi * (x + y) + phase)),
                    c(h, w, 3)))
  storage.mode(px) <- "integer"
  .Call(C_test_write_jpeg, path, px, 95L)
  invisible(path)
}

# The package's worker, except that it fails when it reaches chunk `chunk`
# (computing the chunks before it). Its environment holds only `chunk` and
# the real worker, so that it travels to the future's worker small.
failing_worker <- function(chunk) {
  f <- function(spec, ...) {
    at <- match(chunk, spec$chunks)
    if (is.na(at)) return(real(spec, ...))
    before <- seq_len(at - 1L)
    if (length(before)) {
      real(list(task = spec$task, chunks = spec$chunks[before], first = spec$first[before],
                images = spec$images[before]), ...)
    }
    stop(sprintf("injected failure in chunk %d", chunk))
  }
  environment(f) <- list2env(list(chunk = as.integer(chunk), real = alexnet:::h5f_worker),
                             parent = baseenv())
  f
}

# 8 JPEG files, labels, a weights file and the in-session features: made once.
par_fixture <- local({
  fx <- NULL
  function() {
    if (is.null(fx)) {
      dir <- tempfile("par")
      dir.create(dir)
      files <- file.path(dir, sprintf("img%d.jpg", 1:8))
      for (i in 1:8) par_write_jpeg(files[i], i)
      labels <- rep(c("cat", "dog"), 4)
      net <- alexnet(classes = 2, seed = 11, labels = c("cat", "dog"))
      weights <- file.path(dir, "net.h5")
      save_weights(net, weights)
      old <- alexnet_threads(1)
      on.exit(alexnet_threads(old))
      ref <- alexnet_features(net, image_files(files, labels), "convpool_5", batch_size = 3)
      rm(net)
      release()
      fx <<- list(dir = dir, files = files, labels = labels, weights = weights, ref = ref)
    }
    fx
  }
})

with_plan <- function(strategy, code, ...) {
  old <- future::plan(strategy, ...)
  on.exit(future::plan(old), add = TRUE)
  code
}

chunk_file <- function(out, k) file.path(out, sprintf("chunk-%06d.h5", k))

test_that("sequential plan: every chunk written, read back identical to alexnet_features()", {
  fx <- par_fixture()
  out <- file.path(fx$dir, "seq")
  x <- image_files(fx$files, fx$labels)
  res <- with_plan("sequential",
                   alexnet_features_h5(fx$weights, x, out, chunk_size = 3, batch_size = 3, threads = 1))
  expect_s3_class(res, "alexnet_features_h5")
  expect_identical(res$computed, 1:3)
  expect_identical(res$done, rep(TRUE, 3))
  expect_identical(c(res$n_images, res$n_features, res$n_chunks), c(8L, 9216L, 3L))
  expect_true(all(file.exists(file.path(out, c("features.h5", sprintf("chunk-%06d.h5", 1:3))))))
  f <- read_features(res)
  expect_identical(f, fx$ref)
  expect_identical(as.matrix(res), fx$ref)
  expect_identical(read_features(out), fx$ref)   # the folder itself
  # chunk by chunk
  part <- read_features(res, chunk = 3)
  expect_identical(attr(part, "rows"), 7:8)
  expect_identical(attr(part, "labels"), attr(fx$ref, "labels")[7:8])
  attr(part, "rows") <- NULL
  attr(part, "labels") <- NULL
  expect_identical(part, unname(fx$ref[7:8, , drop = FALSE]))
  expect_output(print(res), "8 images x 9216 features of layer convpool_5")
  # the same call again computes nothing
  again <- with_plan("sequential",
                     alexnet_features_h5(fx$weights, x, out, chunk_size = 3, batch_size = 3, threads = 1))
  expect_identical(again$computed, integer())
  # the files carry the rows as float32 (rows x features), readable by other tools
  v <- .Call(C_h5f_read, chunk_file(out, 2), NULL)
  expect_identical(v$format, "alexnet_features_chunk")
  expect_identical(c(v$first, v$rows), c(4L, 3L))
  expect_identical(dim(v$features), c(3L, 9216L))
})

test_that("multisession with 2 workers gives the same bits as one session", {
  fx <- par_fixture()
  out <- file.path(fx$dir, "multi")
  x <- image_files(fx$files, fx$labels)
  t <- system.time(res <- with_plan("multisession",
                                    alexnet_features_h5(fx$weights, x, out, chunk_size = 3,
                                                        batch_size = 3),
                                    workers = 2))
  expect_identical(res$computed, 1:3)
  # 2 workers on this machine: each uses availableCores() %/% 2 threads
  threads <- vapply(1:3, function(k) .Call(C_h5f_read, chunk_file(out, k), "threads")$threads, integer(1))
  expect_identical(threads, rep(max(1L, as.integer(future::availableCores()) %/% 2L), 3))
  if (all(threads == 1L)) {
    expect_identical(read_features(res), fx$ref)
  } else {
    expect_equal(read_features(res), fx$ref, tolerance = 1e-6)
  }
  # the chunks were computed by two processes, none of them this one
  pids <- vapply(1:3, function(k) .Call(C_h5f_read, chunk_file(out, k), "pid")$pid, integer(1))
  expect_length(unique(pids), 2L)
  expect_false(Sys.getpid() %in% pids)
})

test_that("a re-run computes only the chunks missing after a failure", {
  fx <- par_fixture()
  x <- image_files(fx$files, fx$labels)
  run <- function(out) {
    alexnet_features_h5(fx$weights, x, out, chunk_size = 3, batch_size = 3, threads = 1)
  }
  # a worker fails on chunk 3 (2 workers: one has chunks 1 and 3, the other 2)
  out <- file.path(fx$dir, "resume")
  run_failing <- function(out) {
    local_alexnet_binding("h5f_worker", failing_worker(3L))
    expect_error(run(out), class = "alexnet_error")
  }
  with_plan("multisession", workers = 2, {
    err <- run_failing(out)
    expect_match(conditionMessage(err), "1 of 3 chunks is still missing")
    expect_match(conditionMessage(err), "injected failure in chunk 3")
  })
  # the other worker may still be finishing its chunk
  for (i in 1:240) if (all(file.exists(chunk_file(out, 1:2)))) break else Sys.sleep(0.25)
  expect_false(file.exists(chunk_file(out, 3)))
  expect_error(read_features(out), "1 of 3 chunks")
  expect_error(read_features(out, chunk = 3), "not written yet")
  expect_identical(read_features(out, chunk = 1),
                   structure(fx$ref[1:3, ], labels = attr(fx$ref, "labels")[1:3], rows = 1:3))
  before <- file.info(chunk_file(out, 1:2))$mtime
  res <- with_plan("multisession", workers = 2, run(out))
  expect_identical(res$computed, 3L)
  expect_identical(file.info(chunk_file(out, 1:2))$mtime, before)   # kept, not rewritten
  expect_identical(read_features(res), fx$ref)

  # a killed writer: its chunk missing, its temporary file left behind; a
  # damaged chunk file counts as missing too
  unlink(chunk_file(out, 2))
  writeLines("partial", paste0(chunk_file(out, 2), ".tmp-12345"))
  writeLines("garbage", chunk_file(out, 1))
  expect_error(read_features(res), class = "alexnet_error")          # the object: each chunk checked
  expect_error(read_features(res, chunk = 2), "not written yet", class = "alexnet_error")
  res <- with_plan("sequential", run(out))
  expect_identical(res$computed, 1:2)
  expect_false(file.exists(paste0(chunk_file(out, 2), ".tmp-12345")))
  expect_identical(read_features(res), fx$ref)
})

test_that("images without labels, a character vector of files", {
  fx <- par_fixture()
  out <- file.path(fx$dir, "unlabelled")
  res <- with_plan("sequential", alexnet_features_h5(fx$weights, fx$files[1:2], out, chunk_size = 2,
                                                     threads = 1))
  expect_null(res$labels)
  f <- read_features(res)
  expect_null(attr(f, "labels"))
  # another batch composition than the reference's: equal up to rounding
  expect_equal(f, unname(fx$ref[1:2, ]), tolerance = 1e-5, ignore_attr = TRUE)
})

test_that("an existing output of other inputs is refused, nothing is mixed", {
  fx <- par_fixture()
  out <- file.path(fx$dir, "seq")   # made by the first test (sequential)
  skip_if_not(file.exists(file.path(out, "features.h5")))
  x <- image_files(fx$files, fx$labels)
  go <- function(...) {
    args <- utils::modifyList(list(weights = fx$weights, x = x, output = out, chunk_size = 3,
                                   batch_size = 3, threads = 1), list(...))
    with_plan("sequential", do.call(alexnet_features_h5, args))
  }
  expect_error(go(layer = "dense_1"), "the layer: convpool_5 in the folder, dense_1 now",
               class = "alexnet_error")
  expect_error(go(chunk_size = 4), "the chunk size: 3 in the folder, 4 now", class = "alexnet_error")
  expect_error(go(x = image_files(rev(fx$files), fx$labels)), "the image files", class = "alexnet_error")
  expect_error(go(x = image_files(fx$files)), "the labels", class = "alexnet_error")
  expect_error(go(x = image_files(fx$files, fx$labels, resize = "crop")), "resize",
               class = "alexnet_error")
  other <- file.path(fx$dir, "other.h5")
  file.copy(fx$weights, other)
  expect_identical(go(weights = other)$computed, integer())   # same bytes elsewhere: the same run
  net <- alexnet(classes = 2, seed = 12)
  save_weights(net, other)
  rm(net)
  release()
  expect_error(go(weights = other), "MD5", class = "alexnet_error")
  unlink(other)
  expect_identical(read_features(out), fx$ref)   # unchanged
  # a folder that is not ours, a file as output, a missing weights file
  foreign <- file.path(fx$dir, "foreign")
  dir.create(foreign)
  writeLines("x", file.path(foreign, "notes.txt"))
  expect_error(go(output = foreign), "not empty", class = "alexnet_error")
  expect_error(go(output = fx$files[1]), "is a file", class = "alexnet_error")
  expect_error(go(weights = file.path(fx$dir, "none.h5")), "does not exist", class = "alexnet_error")
  expect_error(go(x = 1:3), "must be an", class = "alexnet_error")
  expect_error(read_features(foreign), "not a folder of features", class = "alexnet_error")
  expect_error(read_features(out, chunk = 4), "has 3 chunks", class = "alexnet_error")
})
