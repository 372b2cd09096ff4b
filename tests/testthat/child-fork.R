# Run by test-reliability.R in a child Rscript (run_child()), under a
# timeout: forked workers used to hang (libgomp's thread pool does not
# survive fork()).

res <- list()
digest <- function(net) .Call(alexnet:::C_test_weights_digest, net$ptr)
set.seed(1)
px <- array(runif(4 * 24 * 24 * 3, 0, 255), c(4, 24, 24, 3))
imgs <- image_array(px, labels = c("a", "b", "a", "b"))
net <- alexnet(labels = c("a", "b"), seed = 1, scale = 1 / 255)
# the parent computes first, on 2 threads: its OpenMP pool and oneDNN
# primitives exist when it forks
res$parent_threads <- alexnet_threads()
f0 <- alexnet_features(net, px, layer = "dense_2", batch_size = 2)
fit <- alexnet_train(net, imgs, epochs = 1, batch_size = 2, seed = 1, optimizer = sgd(lr = 1e-3))
f1 <- alexnet_features(net, px, layer = "dense_2", batch_size = 2)
d1 <- digest(net)
t0 <- Sys.time()
res$workers <- parallel::mclapply(1:2, function(i) {
  out <- list(pid = Sys.getpid())
  # a net made in the parent
  out$features_equal <- isTRUE(all.equal(alexnet_features(net, px, layer = "dense_2", batch_size = 2), f1,
                                         tolerance = 1e-5))
  out$threads <- alexnet_threads()
  out$more_threads <- tryCatch({ alexnet_threads(2); "allowed" }, alexnet_error = function(e) conditionMessage(e))
  fit <- alexnet_train(net, imgs, epochs = 1, batch_size = 2, seed = 2, optimizer = sgd(lr = 1e-3))
  out$trained <- !identical(digest(net), d1)
  out$loss <- fit$history$loss
  # a net made in the child
  own <- alexnet(labels = c("a", "b"), seed = 1, scale = 1 / 255)
  out$own_features_equal <- isTRUE(all.equal(alexnet_features(own, px, layer = "dense_2", batch_size = 2), f0,
                                             tolerance = 1e-5))
  out$forked <- .Call(alexnet:::C_live_nets)[2]
  out
}, mc.cores = 2)
res$seconds <- as.numeric(Sys.time() - t0, units = "secs")
# the parent's net is its own: the workers' training did not reach it
res$parent_unchanged <- identical(digest(net), d1)
res$parent_features <- identical(alexnet_features(net, px, layer = "dense_2", batch_size = 2), f1)
res$parent_threads_after <- alexnet_threads()
# the same step in the parent, for the workers' loss
fit2 <- alexnet_train(net, imgs, epochs = 1, batch_size = 2, seed = 2, optimizer = sgd(lr = 1e-3))
res$parent_loss <- fit2$history$loss
saveRDS(res, paste0(result_file, ".tmp"))
file.rename(paste0(result_file, ".tmp"), result_file)
