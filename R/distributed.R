# Data-parallel training over MPI ranks: the group object and each rank's
# share of a batch. The engine sums the gradients (src/engine/group.c).

#' Train one network with several processes (MPI)
#'
#' In a script started as `mpirun -np K Rscript script.R`, `alexnet_mpi()`
#' joins the K processes (MPI ranks). Give the result to
#' [alexnet_train()] as `group`: every rank then takes its share of each
#' batch, the ranks sum their gradients before every SGD step, and all of
#' them end with the same network and the same history, which is the
#' history one process would have had with the whole batches (up to the
#' order of floating-point sums).
#'
#' Every rank runs the same script on the same data with the same `seed`;
#' the network of rank 0 is copied to the others when training starts, so
#' their own initial weights do not matter. Only rank 0 shows progress and
#' writes the checkpoint; save the weights from rank 0 (`if (group$rank ==
#' 0) save_weights(...)`). If a rank dies, `mpirun` ends the whole job and
#' says which rank failed. MPI is finalised when R exits. Threads: give each
#' rank its share of the cores with [alexnet_threads()].
#'
#' Needs the package built with MPI (`configure` looks for `mpicc`; Debian
#' packages `libopenmpi-dev` and `openmpi-bin`). As root, Open MPI wants
#' `--allow-run-as-root`.
#'
#' GPUs: after `alexnet_mpi()`, `device = "auto"` gives each rank of a
#' machine its own GPU (the rank among those on the machine, modulo the
#' machine's GPUs), so create the network after the group. The gradients
#' are summed on the GPUs (NCCL) when every rank has a GPU of its own, else
#' through host memory.
#'
#' @return An object of class `"alexnet_group"`: a list with `rank` (0 to
#'   K - 1), `size` (K), `local_rank` (among the ranks on this machine) and
#'   `gpu` (the GPU `device = "auto"` takes, -1 for none).
#' @seealso [alexnet_train()]; SCALING.md for the cost of the all-reduce.
#' @export
#' @examples
#' \dontrun{
#' # run as: mpirun -np 2 Rscript train.R
#' library(alexnet)
#' group <- alexnet_mpi()
#' alexnet_threads(1)
#' net <- alexnet(classes = 2, seed = 1)
#' fit <- alexnet_train(net, image_folder("Data/Train"), epochs = 10, batch_size = 16,
#'                      seed = 1, group = group)
#' if (group$rank == 0) save_weights(net, "trained.h5")
#' }
alexnet_mpi <- function() {
  if (!.Call(C_mpi_built)) {
    abort(c("This build of alexnet has no MPI: {.fn alexnet_mpi} cannot join other processes.",
            i = "Install the Debian packages {.pkg libopenmpi-dev} and {.pkg openmpi-bin}, then reinstall alexnet."))
  }
  g <- engine(.Call(C_mpi_group))
  # device = "auto" from here on: this rank's own GPU (local rank modulo the GPUs)
  mpi_state$gpu <- g$gpu
  if (is.null(mpi_state$finalizer)) {
    # MPI must be finalised once, after every use: when R exits
    mpi_state$finalizer <- TRUE
    reg.finalizer(mpi_state, function(e) .Call(C_mpi_finalize), onexit = TRUE)
  }
  structure(g, class = "alexnet_group")
}

mpi_state <- new.env(parent = emptyenv())

#' @export
print.alexnet_group <- function(x, ...) {
  cat(sprintf("<alexnet_group> MPI rank %d of %d\n", x$rank, x$size))
  invisible(x)
}

check_group <- function(group, call = caller_env()) {
  if (!is.null(group) && !inherits(group, "alexnet_group")) {
    abort("{.arg group} must be NULL or made by {.fn alexnet_mpi}, not {.obj_type_friendly {group}}.",
          call = call)
  }
  group
}

# This rank's rows of a batch: contiguous, rank r takes rows
# floor(r n / K) + 1 .. floor((r + 1) n / K) (possibly none). `spec` tells
# the engine where they sit in the global batch.
rank_share <- function(idx, group) {
  n <- length(idx)
  from <- (group$rank * n) %/% group$size
  to <- ((group$rank + 1L) * n) %/% group$size
  list(idx = idx[seq_len(to - from) + from],
       spec = list(group$ptr, as.integer(from), as.integer(n)))
}
