# Reliability (issue 8): interrupts, memory, many and several nets, forked
# workers, threads. Interrupts and forks are tried in child R processes
# (helper-reliability.R) that get real signals, under timeouts, so that a
# hang or a signal cannot take this process with them. RELIABILITY.md has the
# measured figures.

# ---------------------------------------------------------------- interrupts --

interrupt_results <- local({
  res <- NULL
  function() {
    if (is.null(res)) {   # once for the four tests below, a failure included
      res <<- tryCatch(run_child(readLines(test_path("child-interrupts.R")), interrupts = 1:4,
                                 delay = 0.3, timeout = 170),
                       error = function(e) e)
    }
    if (inherits(res, "error")) stop(res)
    res
  }
})

skip_interrupt_tests <- function() {
  skip_on_os("windows")
  skip_if_not(on_linux_proc(), "needs Linux's /proc")
  skip_if_no_installed_alexnet()
}

test_that("SIGINT during training stops it with the net at its last step and the history so far", {
  skip_interrupt_tests()
  r <- interrupt_results()$train
  expect_false(r$escaped)                 # alexnet_train() caught it and returned
  expect_true(r$interrupted)
  expect_match(r$warned, "interrupted in epoch")
  expect_gte(r$steps, 3)                  # the interrupt came after step 3
  # the net took exactly the steps the fit counted ...
  expect_equal(r$iterations, r$steps)
  # ... and is the net of the same training stopped after as many steps
  expect_true(r$same_as_reference)
  # history: the finished epochs (2 steps each) only
  expect_gte(r$history_rows, 1L)
  expect_lte(r$history_rows, r$steps %/% 2)
  expect_true(r$features_ok)
  expect_true(r$features_changed)
  expect_true(r$continued)                # and it trains on
})

test_that("SIGINT during feature extraction leaves the net as it was", {
  skip_interrupt_tests()
  r <- interrupt_results()$features
  expect_identical(r$caught, "interrupted")
  expect_true(r$weights_unchanged)
  expect_true(r$same_features)
})

test_that("SIGINT during training from JPEG files joins the loader's threads", {
  skip_interrupt_tests()
  r <- interrupt_results()$folder
  expect_true(r$interrupted)
  expect_equal(r$iterations_added, r$steps)
  # the loader's 2 workers ran during training and are gone after it
  expect_equal(r$threads_during, r$threads_before + 2)
  expect_equal(r$threads_after, r$threads_before)
  expect_true(r$features_ok)
})

test_that("an interrupt while weights load leaves the previous weights", {
  skip_interrupt_tests()
  r <- interrupt_results()$load_simulated
  expect_true(r$caught)
  expect_true(r$unchanged)
  expect_true(r$mean_unchanged)
  expect_true(r$loads_otherwise)
  r <- interrupt_results()$load_real
  expect_identical(r$caught, "interrupted")
  expect_true(r$whole_file)               # all of one file, never a mix
  expect_true(r$usable)
})

# -------------------------------------------------------------------- memory --

test_that("requests that cannot fit in memory fail clearly before allocating", {
  net <- shared_net()
  tiny <- array(0, c(40000, 1, 1))   # 320 kB of pixels, 24 GB of input at 227 x 227
  # on a pretend machine of 2 GB, so that the figures do not depend on this one
  local_alexnet_binding("phys_memory", function() 2e9)
  expect_error(alexnet_features(net, tiny, batch_size = 40000), class = "alexnet_error",
               regexp = "batch of 40000 images needs about .* GB")
  expect_error(alexnet_features(net, tiny, batch_size = 1e6), "smaller `batch_size`")
  expect_error(predict(net, tiny, batch_size = 1e4), class = "alexnet_error", regexp = "batch")
  expect_error(alexnet_features(net, tiny, layer = "conv_1", batch_size = 1),
               class = "alexnet_error", regexp = "40000 x 290400 matrix")
  imgs <- image_array(tiny[1:2000, , , drop = FALSE], labels = rep(c("cat", "dog"), 1000))
  expect_error(alexnet_train(net, imgs, epochs = 1, batch_size = 2000), class = "alexnet_error",
               regexp = "batch of 2000 images")
  expect_error(alexnet(classes = 1e5), class = "alexnet_error", regexp = "100,000 classes")
  expect_error(alexnet(classes = 1e7), class = "alexnet_error", regexp = "at most 1,000,000")
  # a batch_size larger than the data is the data
  expect_equal(dim(alexnet_features(net, tiny[1:2, , , drop = FALSE], layer = "dense_3",
                                    batch_size = 1e6)), c(2L, 2L))
})

# ------------------------------------------------------------------ many nets --

test_that("creating and dropping 30 nets leaks neither nets nor memory", {
  skip_if_not(on_linux_proc(), "needs Linux's /proc")
  live <- function() .Call(alexnet:::C_live_nets)[1L]
  release()
  net <- alexnet(classes = 2, seed = 1)   # warm-up: the allocator's first arena
  rm(net)
  release()
  live0 <- live()
  rss0 <- rss_mb()
  peak <- rss0
  x <- random_pixels(1, 16, 16)
  for (i in 1:30) {
    net <- alexnet(classes = 2, seed = i)
    if (i %% 15 == 0) alexnet_features(net, x, layer = "dense_3")
    expect_equal(live(), live0 + 1L)       # the previous one was finalised
    rm(net)
    peak <- max(peak, rss_mb())
  }
  release()
  expect_equal(live(), live0)
  # one net is 227 MB: 30 of them leaked would be 6.8 GB
  expect_lt(peak - rss0, 700)
  expect_lt(rss_mb() - rss0, 150)
})

test_that("two nets in one session are independent", {
  a <- alexnet(labels = c("cat", "dog"), seed = 1, scale = 1 / 255)
  b <- alexnet(labels = c("cat", "dog"), seed = 1, scale = 1 / 255)
  digest <- function(net) .Call(alexnet:::C_test_weights_digest, net$ptr)
  px <- random_pixels(4, 20, 20)
  imgs <- image_array(px, labels = c("cat", "dog", "cat", "dog"))
  fb <- alexnet_features(b, px, layer = "dense_3")
  expect_identical(alexnet_features(a, px, layer = "dense_3"), fb)
  db <- digest(b)
  alexnet_train(a, imgs, epochs = 1, batch_size = 2, seed = 1, optimizer = sgd(lr = 1e-3))
  expect_false(identical(digest(a), db))
  expect_identical(digest(b), db)
  expect_identical(alexnet_features(b, px, layer = "dense_3"), fb)
  expect_false(identical(alexnet_features(a, px, layer = "dense_3"), fb))
  expect_equal(.Call(alexnet:::C_get_state, b$ptr, "iterations"), 0)
  rm(a, b)
  release()
})

# -------------------------------------------------------------------- threads --

test_that("a failing JPEG call leaves no loader thread behind", {
  skip_if_not(on_linux_proc(), "needs Linux's /proc")
  net <- shared_net()
  dir <- tempfile("jpegs-")
  dir.create(dir)
  on.exit(unlink(dir, recursive = TRUE), add = TRUE)
  for (cl in c("cat", "dog")) dir.create(file.path(dir, cl))
  for (i in 1:4) {
    img <- array(as.integer(stats::runif(30 * 30 * 3, 0, 255)), c(30, 30, 3))
    .Call(alexnet:::C_test_write_jpeg, file.path(dir, c("cat", "dog")[i %% 2 + 1], paste0(i, ".jpg")),
          img, 90L)
  }
  writeLines("not a jpeg", file.path(dir, "dog", "9.jpg"))
  folder <- image_folder(dir)
  good <- folder[1:4]
  invisible(alexnet_features(net, good, batch_size = 2))   # warm-up: OpenMP threads
  n0 <- thread_count()
  expect_error(alexnet_features(net, folder, batch_size = 2), class = "alexnet_error",
               regexp = "9.jpg")
  expect_equal(thread_count(), n0)
  expect_error(alexnet_train(net, folder, epochs = 1, batch_size = 5), class = "alexnet_error",
               regexp = "9.jpg")
  expect_equal(thread_count(), n0)
  expect_true(all(is.finite(alexnet_features(net, good, batch_size = 2))))
  expect_equal(thread_count(), n0)
})

# -------------------------------------------------------------------- forks --

test_that("forked workers (mclapply) use nets without hanging, on one thread", {
  skip_on_os("windows")
  skip_if_not(on_linux_proc(), "needs Linux's /proc")
  skip_if_no_installed_alexnet()
  r <- run_child(readLines(test_path("child-fork.R")), timeout = 170)
  expect_gte(r$parent_threads, 1L)
  expect_length(r$workers, 2L)
  for (w in r$workers) {
    expect_true(is.list(w), info = paste(format(w), collapse = " "))
    expect_true(w$features_equal)          # a net made in the parent
    expect_true(w$own_features_equal)      # a net made in the worker
    expect_equal(w$threads, 1L)
    expect_match(w$more_threads, "forked process")
    expect_true(w$trained)
    expect_equal(w$loss, r$parent_loss, tolerance = 1e-4)
    expect_equal(w$forked, 1L)
  }
  expect_true(r$parent_unchanged)
  expect_true(r$parent_features)
  expect_equal(r$parent_threads_after, r$parent_threads)
})

test_that("the engine's calls leave R's floating point as it was (denormals kept)", {
  # the engine flushes denormal floats while it computes (signals.c), on R's
  # thread too: R's own arithmetic must get them back afterwards
  net <- shared_net()
  x <- image_array(random_pixels(2), labels = c("a", "b"))
  tiny <- 2^-1074
  expect_gt(tiny * 2, 0)
  f <- alexnet_features(net, x$pixels, "dense_3")
  expect_gt(tiny * 2, 0)
  expect_identical(tiny * 2, 2^-1073)
  expect_gt(.Machine$double.xmin / 4, 0)
})
