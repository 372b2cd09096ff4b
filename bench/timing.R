# timing.R: what the R benchmarks share (sourced from the bench folder, as
# the .sh drivers run them): command-line options and the timing policy.

# --name value from the command line, else the default
opt <- function(name, default, args = commandArgs(TRUE)) {
  i <- match(paste0("--", name), args)
  if (is.na(i)) default else args[[i + 1L]]
}

# images per second of f() (which handles `images` images): `warmup`
# untimed calls, then the median over timed calls until `budget` seconds
# have passed (at least 3)
timed <- function(f, images, budget, warmup = 3L) {
  for (i in seq_len(warmup)) f()
  t <- numeric()
  start <- proc.time()[["elapsed"]]
  while (length(t) < 3 || proc.time()[["elapsed"]] - start < budget) {
    t0 <- proc.time()[["elapsed"]]
    f()
    t <- c(t, proc.time()[["elapsed"]] - t0)
  }
  images / stats::median(t)
}
