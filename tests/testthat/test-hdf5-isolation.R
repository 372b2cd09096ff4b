# HDF5 files that crash or hang libhdf5 1.10 itself (fixtures/hdf5_crashes,
# see tests/fuzz/known_hdf5_crashes/README.md). The package reads HDF5
# weights files in a child process: each file must be an R error naming it,
# in this session, which then goes on computing as before.

crash_dir <- test_path("fixtures", "hdf5_crashes")
crash_files <- file.path(crash_dir, c("h5hg_read_overflow.h5", "h5hg_deserialize_segv.h5",
                                      "h5o_huge_allocation.h5"))
hang_file <- file.path(crash_dir, "h5hg_deserialize_hang.h5")
# How a crash inside libhdf5 ends the child: by the signal, or, where the
# sanitizer runtime is loaded into R (tools/sanitize.sh --r), by
# AddressSanitizer's exit status 1 after it has caught the bad access.
under_asan <- grepl("libasan", Sys.getenv("LD_PRELOAD"), fixed = TRUE)
# The signal depends on the heap the child inherits: the overflow faults
# (SIGSEGV) or glibc notices it first and aborts (SIGABRT).
crash_words <- if (under_asan) "the process reading it \\(the HDF5 library\\) failed with exit status 1" else
  "the HDF5 library crashed reading it \\(signal [0-9]+, SIG[A-Z]+\\)"

test_that("files that crash libhdf5 are errors naming them; the session goes on", {
  net <- alexnet(classes = 2, seed = 3)
  px <- random_pixels(2, 32, 32, 3, seed = 5)
  before <- alexnet_features(net, px, "dense_3")
  for (f in crash_files) {
    expect_error(load_weights(net, f, verbose = FALSE), basename(f), fixed = TRUE)
    expect_error(weights_info(f), basename(f), fixed = TRUE)
    expect_error(alexnet(weights = f), basename(f), fixed = TRUE)
  }
  # what the crashing reads say
  expect_error(load_weights(net, crash_files[1], verbose = FALSE),
               paste0("is damaged: ", crash_words, "; nothing was loaded"))
  expect_error(weights_info(crash_files[1]), crash_words)
  expect_identical(alexnet_features(net, px, "dense_3"), before)
})

test_that("a file that hangs libhdf5 is stopped after options(alexnet.hdf5_timeout) seconds", {
  old <- options(alexnet.hdf5_timeout = 2)
  on.exit(options(old))
  net <- alexnet(classes = 2, seed = 3)
  px <- random_pixels(2, 32, 32, 3, seed = 5)
  before <- alexnet_features(net, px, "dense_3")
  t0 <- Sys.time()
  expect_error(load_weights(net, hang_file, verbose = FALSE),
               "the HDF5 library made no progress reading it for 2 s", fixed = TRUE)
  expect_error(weights_info(hang_file), "no progress reading it for 2 s", fixed = TRUE)
  expect_lt(as.numeric(difftime(Sys.time(), t0, units = "secs")), 30)
  expect_identical(alexnet_features(net, px, "dense_3"), before)
  options(alexnet.hdf5_timeout = "soon")
  expect_error(weights_info(hang_file), "alexnet.hdf5_timeout must be a positive number", fixed = TRUE)
})

test_that("a Ctrl-C while libhdf5 hangs stops the read at once; the net is unchanged", {
  skip_on_os("windows")
  skip_if_not(on_linux_proc(), "needs Linux's /proc")
  skip_if_no_installed_alexnet()
  # a child R session (helper-reliability.R) gets a real SIGINT 1 s into
  # the read of the hanging file, whose timeout is 60 s
  code <- c(
    sprintf("hang_file <- %s", deparse(normalizePath(hang_file))),
    "options(alexnet.hdf5_timeout = 60)",
    "net <- alexnet(classes = 2, seed = 3)",
    "digest <- function(net) .Call(alexnet:::C_test_weights_digest, net$ptr)",
    "d0 <- digest(net)",
    "marker(1)",
    "t0 <- Sys.time()",
    "got <- tryCatch(load_weights(net, hang_file, verbose = FALSE), interrupt = function(e) 'interrupted')",
    "res <- list(got = got, seconds = as.numeric(difftime(Sys.time(), t0, units = 'secs')),",
    "            unchanged = identical(digest(net), d0),",
    "            usable = all(is.finite(alexnet_features(net, array(1, c(1, 32, 32, 3))))))",
    "saveRDS(res, paste0(result_file, '.tmp'))",
    "file.rename(paste0(result_file, '.tmp'), result_file)")
  r <- run_child(code, interrupts = 1, delay = 1, timeout = 120)
  expect_identical(r$got, "interrupted")
  expect_lt(r$seconds, 20)
  expect_true(r$unchanged)
  expect_true(r$usable)
})

# A features manifest damaged as the fuzzer damages files: the size of a
# variable-length string's object in the global heap (the first object's at
# byte 24 of the collection "GCOL", the second's at 56) overwritten with 0xFF.
# Read in process, libhdf5 1.10.8 dies of SIGSEGV on the first and loops for
# ever on the second (H5HG_read); where the heap lies decides whether the
# crash is SIGSEGV or an abort of malloc.
damaged_manifest <- function(path, size_field_at) {
  alexnet:::h5f_write(path, list(format = "alexnet_features", run_id = "abc", n_images = 3L))
  bytes <- readBin(path, "raw", file.size(path))
  gcol <- grepRaw(charToRaw("GCOL"), bytes)
  bytes[gcol + size_field_at + 0:7] <- as.raw(0xff)
  writeBin(bytes, path)
  invisible(path)
}

test_that("read_features() on files that crash or hang libhdf5: an R error naming the file; the session goes on", {
  old <- options(alexnet.hdf5_timeout = 2)
  on.exit(options(old))
  out <- tempfile("features")
  dir.create(out)
  on.exit(unlink(out, recursive = TRUE), add = TRUE)
  manifest <- file.path(out, "features.h5")
  damaged_manifest(manifest, 24)
  expect_error(read_features(out),
               paste0("features file '.*features\\.h5'\\s+is damaged: ",
                      if (under_asan) "the process reading it \\(the HDF5 library\\)\\s+failed with exit status 1" else
                        "the HDF5 library crashed reading it \\(signal [0-9]+, SIG"))
  damaged_manifest(manifest, 56)
  t0 <- Sys.time()
  expect_error(read_features(out), "the HDF5 library made no progress reading it for 2 s", fixed = TRUE)
  expect_lt(as.numeric(difftime(Sys.time(), t0, units = "secs")), 30)
  # the files that crash libhdf5 in the weights readers: an error too
  for (f in c(crash_files, hang_file)) {
    file.copy(f, manifest, overwrite = TRUE)
    expect_error(read_features(out), basename(manifest), fixed = TRUE)
  }
  # the session goes on: a good file is written and read back
  good <- file.path(out, "good.h5")
  alexnet:::h5f_write(good, list(format = "x", features = matrix(as.double(1:6), 2)))
  expect_identical(alexnet:::h5f_read(good), list(format = "x", features = matrix(as.double(1:6), 2)))
})
