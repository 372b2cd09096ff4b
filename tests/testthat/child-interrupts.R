# Run by test-reliability.R in a child Rscript (see run_child() in
# helper-reliability.R), which receives a real SIGINT after each marker.
# Every interrupt is caught here; the checks after it go to the result.

res <- list()
digest <- function(net) .Call(alexnet:::C_test_weights_digest, net$ptr)
iterations <- function(net) .Call(alexnet:::C_get_state, net$ptr, "iterations")
threads <- function() length(list.files("/proc/self/task"))
set.seed(1)
px <- array(runif(4 * 32 * 32 * 3, 0, 255), c(4, 32, 32, 3))
imgs <- image_array(px, labels = c("a", "b", "a", "b"))
res$signal_handler <- "R's (SIGINT is an interrupt in Rscript too)"

message("section 1")
# ---- 1: training (an image_array, 2 steps per epoch) --------------------
net <- alexnet(labels = c("a", "b"), seed = 1, scale = 1 / 255)
f_before <- alexnet_features(net, px, layer = "dense_3", batch_size = 4)
steps <- 0
untrace_steps <- after_each_step(function(epoch) {
  steps <<- steps + 1
  if (steps == 3) marker(1)   # the parent interrupts now: in step 4 or between
})
warned <- NULL
fit <- withCallingHandlers(
  tryCatch(alexnet_train(net, imgs, epochs = 200, batch_size = 2, seed = 7,
                         optimizer = sgd(lr = 1e-3)),
           interrupt = function(e) "escaped"),
  warning = function(w) {
    warned <<- conditionMessage(w)
    invokeRestart("muffleWarning")
  })
untrace_steps()
res$train <- list(
  escaped = identical(fit, "escaped"),
  interrupted = isTRUE(fit$interrupted), steps = fit$steps, iterations = iterations(net),
  history_rows = nrow(fit$history), warned = warned,
  digest = digest(net),
  features_ok = all(is.finite(alexnet_features(net, px, layer = "dense_3", batch_size = 4))),
  features_changed = !identical(f_before, alexnet_features(net, px, layer = "dense_3", batch_size = 4))
)
# the same training stopped (in R, at no particular time) after as many steps:
# the interrupted net must be exactly that one
ref <- alexnet(labels = c("a", "b"), seed = 1, scale = 1 / 255)
ref_steps <- 0
untrace_steps <- after_each_step(function(epoch) {
  ref_steps <<- ref_steps + 1
  if (ref_steps == fit$steps) send_interrupt()
})
ref_fit <- suppressWarnings(alexnet_train(ref, imgs, epochs = 200, batch_size = 2, seed = 7,
                                          optimizer = sgd(lr = 1e-3)))
untrace_steps()
res$train$same_as_reference <- identical(digest(ref), res$train$digest) &&
  ref_fit$steps == fit$steps
rm(ref)
# training goes on from there
more <- alexnet_train(net, imgs, epochs = 1, batch_size = 2, seed = 8, optimizer = sgd(lr = 1e-3))
res$train$continued <- !more$interrupted && nrow(more$history) == 1L &&
  iterations(net) == res$train$iterations + 2

message("section 2")
# ---- 2: feature extraction ------------------------------------------------
many <- array(runif(16 * 20 * 20, 0, 255), c(16, 20, 20))
f_ref <- alexnet_features(net, many, layer = "convpool_5", batch_size = 1)
d_before <- digest(net)
rounds <- 0
got <- tryCatch({
  for (i in 1:500) {
    f <- alexnet_features(net, many, layer = "convpool_5", batch_size = 1)
    rounds <- rounds + 1
    if (rounds == 1) marker(2)
  }
  "not interrupted"
}, interrupt = function(e) "interrupted")
res$features <- list(
  caught = got, rounds = rounds, weights_unchanged = identical(digest(net), d_before),
  same_features = identical(alexnet_features(net, many, layer = "convpool_5", batch_size = 1), f_ref)
)

message("section 3")
# ---- 3: training from JPEG files (the threaded loader) ---------------------
dir <- tempfile("jpegs-")
for (cl in c("a", "b")) dir.create(file.path(dir, cl), recursive = TRUE)
for (i in 1:6) {
  img <- array(as.integer(runif(40 * 40 * 3, 0, 255)), c(40, 40, 3))
  .Call(alexnet:::C_test_write_jpeg, file.path(dir, c("a", "b")[i %% 2 + 1], sprintf("%d.jpg", i)),
        img, 90L)
}
folder <- image_folder(dir, augment = image_augment(), seed = 1)
invisible(alexnet_features(net, folder, batch_size = 2))   # warm-up: OpenMP and loader once
threads_before <- threads()
threads_during <- NA
it0 <- iterations(net)
steps <- 0
untrace_steps <- after_each_step(function(epoch) {
  steps <<- steps + 1
  threads_during <<- threads()   # the loader's 2 workers are running
  if (steps == 1) marker(3)
})
fit3 <- suppressWarnings(tryCatch(
  alexnet_train(net, folder, epochs = 100, batch_size = 2, seed = 3, optimizer = sgd(lr = 1e-3)),
  interrupt = function(e) "escaped"))
untrace_steps()
invisible(gc())
res$folder <- list(
  interrupted = isTRUE(fit3$interrupted), steps = fit3$steps, iterations_added = iterations(net) - it0,
  threads_before = threads_before, threads_during = threads_during, threads_after = threads(),
  features_ok = all(is.finite(alexnet_features(net, folder, batch_size = 2)))
)

message("section 4")
# ---- 4: weight loading -----------------------------------------------------
file_a <- tempfile(fileext = ".h5")
file_b <- tempfile(fileext = ".h5")
save_weights(net, file_a)
other <- alexnet(labels = c("x", "y"), seed = 99, mean = 0)
save_weights(other, file_b)
d_a <- digest(net)
d_b <- digest(other)
rm(other)
invisible(gc())
# (a) an interrupt arriving during the read (simulated: the glue's load as
# C_weights_load runs it, with SIGINT raised right after the engine's read,
# before it commits to R: the test-only entry takes the place of
# C_weights_load in the package for this one call)
with_test_load <- function(code) {
  ns <- asNamespace("alexnet")
  real <- get("C_weights_load", envir = ns)
  unlockBinding("C_weights_load", ns)
  assign("C_weights_load", alexnet:::C_test_weights_load_interrupted, envir = ns)
  on.exit({
    assign("C_weights_load", real, envir = ns)
    lockBinding("C_weights_load", ns)
  })
  code
}
target <- alexnet(labels = c("a", "b"), seed = 5)
d_target <- digest(target)
mean_target <- .Call(alexnet:::C_net_get_mean, target$ptr)
sim <- tryCatch(with_test_load(load_weights(target, file_b, verbose = FALSE)),
                interrupt = function(e) "interrupted")
res$load_simulated <- list(
  caught = identical(sim, "interrupted"), unchanged = identical(digest(target), d_target),
  mean_unchanged = identical(.Call(alexnet:::C_net_get_mean, target$ptr), mean_target)
)
# the same load without the interrupt does change it
target <- load_weights(target, file_b, verbose = FALSE)
res$load_simulated$loads_otherwise <- identical(digest(target), d_b)
# (b) real SIGINTs while loading the two files in turn: the net is always
# entirely one of them
loads <- 0
got <- tryCatch({
  for (i in 1:200) {
    target <- load_weights(target, if (i %% 2 == 1) file_a else file_b, verbose = FALSE)
    loads <- loads + 1
    if (loads == 2) marker(4)
  }
  "not interrupted"
}, interrupt = function(e) "interrupted")
d_now <- digest(target)
res$load_real <- list(
  caught = got, loads = loads,
  whole_file = identical(d_now, d_a) || identical(d_now, d_b),
  labels = target$labels,
  usable = all(is.finite(alexnet_features(target, px, batch_size = 4)))
)
unlink(c(file_a, file_b, dir), recursive = TRUE)

res$live_nets <- .Call(alexnet:::C_live_nets)
saveRDS(res, paste0(result_file, ".tmp"))
file.rename(paste0(result_file, ".tmp"), result_file)
