# The engine's backends and its threads.

#' The compute backends
#'
#' Describes where networks can run: the CPU backend (oneDNN primitives,
#' OpenMP threads) always, and the GPU backend (cuDNN and cuBLAS) where the
#' package was built with CUDA and cuDNN and a GPU is present.
#'
#' The GPU backend is a shared object of its own beside the package's
#' (`libs/alexnet_cuda.so`), loaded on the first use of a GPU, and only
#' where an NVIDIA driver is installed: without one, loading the package and
#' working on the CPU map no CUDA library, and a build with the GPU backend
#' runs on the CPU wherever the CUDA libraries are missing (`cuda_why` then
#' says what the dynamic loader said). The environment variable
#' `ALEXNET_CUDA_BACKEND` names another file to load instead.
#'
#' @return An object of class `"alexnet_backend"`: a list with `device` (the
#'   device `alexnet(device = "auto")` chooses: `"cuda:0"` or `"cpu"`), `cpu`
#'   (the CPU backend's description, e.g. `"cpu (oneDNN 2.6.3, 2
#'   threads)"`), `threads`, `cuda_built` (whether the GPU backend was built),
#'   `gpus` (one description per usable GPU: name, memory, compute
#'   capability, CUDA runtime and driver versions, cuDNN version), `cuda_why`
#'   (why no GPU is usable, e.g. `"no NVIDIA driver (...)"`; `""` where one
#'   is), `tf32`
#'   (whether cuDNN convolutions may use TF32 tensor-core math, as PyTorch's
#'   default; set the environment variable `AN_CUDA_TF32=0` before loading
#'   the package for full FP32), `cpu_bf16` (`NA` where the CPU runs
#'   bfloat16 natively, see [alexnet_precision()], else why not) and
#'   `gpus_bf16` (the same for each GPU).
#' @seealso [alexnet_threads()], [alexnet_to()]
#' @export
#' @importFrom rlang %||%
#' @examples
#' alexnet_backend()
alexnet_backend <- function() {
  info <- .Call(C_cuda_info)
  bf16_missing <- function(ordinal) .Call(C_bf16_missing, ordinal) %||% NA_character_
  structure(
    list(device = if (length(info$devices)) "cuda:0" else "cpu",
         cpu = .Call(C_backend_name), threads = .Call(C_get_threads),
         cuda_built = info$built, gpus = info$devices, cuda_why = info$why, tf32 = info$tf32,
         cpu_bf16 = bf16_missing(-1L),
         gpus_bf16 = vapply(seq_along(info$devices) - 1L, bf16_missing, "")),
    class = "alexnet_backend"
  )
}

bf16_note <- function(why) {
  if (is.na(why)) "bf16: native" else sprintf("bf16: no (%s)", why)
}

#' @export
print.alexnet_backend <- function(x, ...) {
  cat(sprintf("alexnet backends (default device: %s)\n", x$device))
  cat(sprintf("  cpu:    %s; %s\n", x$cpu, bf16_note(x$cpu_bf16)))
  if (!x$cuda_built) {
    cat("  cuda:   not built (configure found no CUDA toolkit with cuDNN)\n")
  } else if (!length(x$gpus)) {
    cat(sprintf("  cuda:   built; no usable GPU: %s\n", x$cuda_why))
  } else {
    for (i in seq_along(x$gpus)) {
      cat(sprintf("  cuda:%d %s%s; %s\n", i - 1L, x$gpus[[i]], if (x$tf32) " (TF32 convolutions)" else "",
                  bf16_note(x$gpus_bf16[[i]])))
    }
  }
  invisible(x)
}

# One line naming where a net runs.
device_description <- function(device) {
  if (is.null(device) || device == "cpu") {
    return(.Call(C_backend_name))
  }
  gpus <- .Call(C_cuda_info)$devices
  k <- device_ordinal(device) + 1L
  sprintf("%s (%s)", device, if (k <= length(gpus)) gpus[[k]] else "GPU")
}

#' Number of CPU threads
#'
#' Gets or sets the number of threads the CPU backend uses (by default all
#' the cores available).
#'
#' In a forked process (the workers of [parallel::mclapply()]) the engine
#' runs on one thread, because OpenMP cannot start threads after a fork; a
#' network made before the fork is rebuilt in the worker on first use (a
#' second or so), and what the worker does to it stays in the worker. Asking
#' for more threads there is an error. Clusters of new R processes
#' ([parallel::makePSOCKcluster()], `future::plan(multisession)`) have no
#' such limit but must create or load their networks themselves.
#'
#' @param threads `NULL` to query, or the number of threads to use (a whole
#'   number from 1 to 4 per core of the machine: more only thrash).
#' @return With `threads = NULL`, the number of threads. Otherwise, invisibly,
#'   the number before the change.
#' @export
#' @examples
#' alexnet_threads()
#' old <- alexnet_threads(1)
#' alexnet_threads(old)
alexnet_threads <- function(threads = NULL) {
  old <- .Call(C_get_threads)
  if (is.null(threads)) {
    return(old)
  }
  threads <- check_count(threads)
  if (threads > 1L && in_forked_child()) {
    abort(c("This is a forked process (from {.fn parallel::mclapply} or {.fn parallel::mcparallel}): the engine runs on one thread here.",
            x = "OpenMP cannot start threads again after a fork.",
            i = "For several threads per worker, use new R processes: {.fn parallel::makePSOCKcluster} with {.fn parallel::parLapply}, or {.code future::plan(multisession)}."))
  }
  engine(.Call(C_set_threads, threads))
  invisible(old)
}

# TRUE in a process forked from the one that loaded the package.
in_forked_child <- function() isTRUE(.Call(C_live_nets)[2L] == 1L)
