# The engine's backend and its threads.

#' The compute backend
#'
#' Describes the backend that runs the networks. This version has the CPU
#' backend only (oneDNN primitives, OpenMP threads); the GPU backend (CUDA and
#' cuDNN) comes later.
#'
#' @return An object of class `"alexnet_backend"`: a list with `device`
#'   (`"cpu"`), `description` (the engine's own description, e.g.
#'   `"cpu (oneDNN 2.6.3, 2 threads)"`) and `threads`.
#' @seealso [alexnet_threads()]
#' @export
#' @examples
#' alexnet_backend()
alexnet_backend <- function() {
  structure(
    list(device = "cpu", description = .Call(C_backend_name),
         threads = .Call(C_get_threads)),
    class = "alexnet_backend"
  )
}

#' @export
print.alexnet_backend <- function(x, ...) {
  cat(sprintf("alexnet backend: %s\n", x$description))
  invisible(x)
}

#' Number of CPU threads
#'
#' Gets or sets the number of threads the CPU backend uses (by default all
#' the cores available).
#'
#' @param threads `NULL` to query, or the number of threads to use (a whole
#'   number of at least 1).
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
  engine(.Call(C_set_threads, threads))
  invisible(old)
}
