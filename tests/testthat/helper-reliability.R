# Helpers of test-reliability.R: child R processes (for interrupts and
# forks, so that a hang or a signal cannot take the test process with it),
# and what Linux's /proc says about this process.

on_linux_proc <- function() {
  file.exists("/proc/self/status") && dir.exists("/proc/self/task")
}

# Resident memory of this process, MB.
rss_mb <- function() {
  line <- grep("^VmRSS:", readLines("/proc/self/status"), value = TRUE)
  as.numeric(gsub("[^0-9]", "", line)) / 1024
}

# Threads of this process.
thread_count <- function() length(list.files("/proc/self/task"))

# An installed alexnet that a child R process can load (not the case under
# devtools::load_all() of the sources alone).
skip_if_no_installed_alexnet <- function() {
  skip_if(!nzchar(system.file(package = "alexnet", lib.loc = .libPaths())),
          "alexnet is not installed: child R processes could not load it")
}

# Runs `code` (a character vector of R lines) in a new Rscript process with
# this process's library paths and alexnet attached. The child finds
# `result_file` (where it saves its result with saveRDS) and `marker(k)`, a
# function that creates the k-th marker file. For each k in `interrupts`, the
# parent waits for marker k and then sends the child SIGINT (after `delay`
# seconds). Returns the child's result; fails with the child's output when
# it does not finish within `timeout` seconds (it is then killed).
run_child <- function(code, interrupts = integer(), delay = 0, timeout = 150) {
  dir <- tempfile("alexnet-child-")
  dir.create(dir)
  on.exit(unlink(dir, recursive = TRUE), add = TRUE)
  result_file <- file.path(dir, "result.rds")
  pid_file <- file.path(dir, "pid")
  log <- file.path(dir, "log.txt")
  script <- file.path(dir, "child.R")
  writeLines(c(
    sprintf(".libPaths(%s)", paste(deparse(.libPaths()), collapse = "")),
    "suppressPackageStartupMessages(library(alexnet))",
    sprintf("result_file <- %s", deparse(result_file)),
    sprintf("marker <- function(k) file.create(file.path(%s, paste0('marker-', k)))",
            deparse(dir)),
    sprintf("writeLines(as.character(Sys.getpid()), %s)", deparse(pid_file)),
    paste("after_each_step <-", paste(deparse(after_each_step), collapse = "\n")),
    paste("send_interrupt <-", paste(deparse(send_interrupt), collapse = "\n")),
    code
  ), script)
  rscript <- file.path(R.home("bin"), "Rscript")
  system2(rscript, c("--vanilla", shQuote(script)), stdout = log, stderr = log, wait = FALSE)
  deadline <- Sys.time() + timeout
  child_output <- function() paste(tryCatch(readLines(log), error = function(e) ""), collapse = "\n")
  pid <- NA_integer_
  # FALSE when the time is up, or the child has ended (crashed) without `file`
  wait_for <- function(file) {
    while (!file.exists(file)) {
      if (Sys.time() > deadline) return(FALSE)
      if (!is.na(pid) && dir.exists("/proc/self") && !dir.exists(file.path("/proc", pid))) {
        Sys.sleep(0.5)
        return(file.exists(file))
      }
      Sys.sleep(0.05)
    }
    TRUE
  }
  kill <- function() if (!is.na(pid)) tools::pskill(pid, tools::SIGKILL)
  on.exit(kill(), add = TRUE)
  if (!wait_for(pid_file)) stop("the child R process did not start:\n", child_output())
  Sys.sleep(0.1)
  pid <- as.integer(readLines(pid_file))
  for (k in interrupts) {
    if (!wait_for(file.path(dir, paste0("marker-", k)))) {
      stop("the child R process did not reach marker ", k, " (ended, or out of time):\n",
           child_output())
    }
    if (delay > 0) Sys.sleep(delay)
    tools::pskill(pid, tools::SIGINT)
  }
  if (!wait_for(result_file)) {
    stop("the child R process ended without a result, or ran over ", timeout, " s:\n",
         child_output())
  }
  Sys.sleep(0.2)  # saveRDS may still be writing
  res <- NULL
  for (i in 1:20) {
    res <- tryCatch(readRDS(result_file), error = function(e) NULL)
    if (!is.null(res)) break
    Sys.sleep(0.25)
  }
  if (is.null(res)) stop("could not read the child's result:\n", child_output())
  attr(res, "output") <- child_output()
  res
}
