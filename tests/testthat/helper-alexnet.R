# Training reports progress by default (in Rscript too); the tests that
# check it ask for it.
options(alexnet.verbose = FALSE)

# Shared fixtures. A network takes about 1 s and 250 MB to create, so most
# tests share one, made on first use.

shared_net <- local({
  net <- NULL
  function() {
    if (is.null(net)) {
      net <<- alexnet(classes = 2, seed = 42, labels = c("cat", "dog"))
    }
    net
  }
})

# n random images, values 0..255, dim c(n, h, w, channels) (or c(n, h, w)
# when channels is 0).
random_pixels <- function(n = 2, h = 28, w = 28, channels = 3, seed = 1) {
  set.seed(seed)
  d <- if (channels == 0) c(n, h, w) else c(n, h, w, channels)
  array(stats::runif(prod(d), 0, 255), dim = d)
}

# Free the memory of nets made inside a test.
release <- function() {
  invisible(gc(verbose = FALSE))
}

# Replace the package's internal object `name` by `value` until the calling
# test (or function) ends: testthat::local_mocked_bindings() where testthat
# has it (3.1.7 and later), else the same done by hand.
local_alexnet_binding <- function(name, value, .env = parent.frame()) {
  if (exists("local_mocked_bindings", envir = asNamespace("testthat"), inherits = FALSE)) {
    mocks <- stats::setNames(list(value), name)
    do.call(testthat::local_mocked_bindings, c(mocks, list(.package = "alexnet", .env = .env)))
    return(invisible())
  }
  ns <- asNamespace("alexnet")
  old <- get(name, envir = ns, inherits = FALSE)
  locked <- bindingIsLocked(name, ns)
  if (locked) unlockBinding(name, ns)
  assign(name, value, envir = ns)
  withr::defer({
    assign(name, old, envir = ns)
    if (locked) lockBinding(name, ns)
  }, envir = .env)
  invisible()
}

# Calls fun(epoch) after every training step until the function it returns
# is called: alexnet:::train_batch traced, a seam for tests alone. An
# interrupt that fun sends with tools::pskill() is raised once the step has
# been counted, as a Ctrl-C arriving during the step is.
after_each_step <- function(fun) {
  ns <- asNamespace("alexnet")
  suppressMessages(trace("train_batch", exit = bquote(.(fun)(epoch)), where = ns, print = FALSE))
  function() invisible(suppressMessages(untrace("train_batch", where = ns)))
}

# Sends this R process a real SIGINT (a Ctrl-C).
send_interrupt <- function() tools::pskill(Sys.getpid(), tools::SIGINT)

# A small two-class task that a fresh net learns in a few epochs.
stripes <- function(n, seed) {
  # class "h": horizontal stripes, "v": vertical stripes, random phase and noise
  set.seed(seed)
  px <- array(0, c(n, 32, 32))
  lab <- rep(c("h", "v"), length.out = n)
  for (i in seq_len(n)) {
    phase <- sample(0:7, 1)
    band <- ((seq_len(32) + phase) %/% 4) %% 2 * 255
    img <- if (lab[i] == "h") matrix(band, 32, 32) else matrix(band, 32, 32, byrow = TRUE)
    px[i, , ] <- pmin(255, pmax(0, img + rnorm(32 * 32, sd = 20)))
  }
  image_array(px, labels = factor(lab, levels = c("h", "v")))
}

# A JPEG file of x (height x width x channels, 0..255) written by libjpeg
# through the package's test entry (integers, quality 100 by default).
write_jpeg <- function(path, x, quality = 100) {
  dir.create(dirname(path), recursive = TRUE, showWarnings = FALSE)
  storage.mode(x) <- "integer"
  .Call(C_test_write_jpeg, path, x, as.integer(quality))
  invisible(path)
}

# A new temporary folder, removed when the calling test (or function) ends.
local_test_dir <- function(env = parent.frame()) {
  dir <- tempfile("alexnet-test-")
  dir.create(dir)
  do.call(on.exit, list(substitute(unlink(d, recursive = TRUE), list(d = dir)), add = TRUE), envir = env)
  dir
}
