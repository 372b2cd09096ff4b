# Training from R: learning, reproducibility, interrupts, checkpoints, errors.

test_that("training learns a small problem to high accuracy", {
  train <- stripes(32, 1)
  test <- stripes(16, 2)
  # scale 1/255 keeps the logits of a fresh net moderate (see ?alexnet)
  net <- alexnet(labels = c("h", "v"), seed = 1, scale = 1 / 255)
  fit <- alexnet_train(net, train, validation = test, epochs = 3, batch_size = 16,
                       optimizer = sgd(lr = 1e-3), seed = 1)
  expect_s3_class(fit, "alexnet_fit")
  expect_identical(names(fit$history),
                   c("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr", "seconds"))
  expect_equal(nrow(fit$history), 3)
  expect_gte(fit$history$val_accuracy[3], 0.9)
  expect_lt(fit$history$loss[3], fit$history$loss[1])
  # the net itself was trained in place
  expect_gte(mean(predict(net, test, type = "class") == test$labels), 0.9)
})

test_that("the same seed gives the same history and weights", {
  train <- stripes(16, 5)
  run <- function() {
    net <- alexnet(labels = c("h", "v"), seed = 7)
    fit <- alexnet_train(net, train, epochs = 2, batch_size = 8,
                         optimizer = sgd(lr = 1e-5), seed = 9)
    list(h = fit$history[, c("loss", "accuracy")], p = alexnet:::net_params(net))
  }
  a <- run()
  b <- run()
  expect_identical(a$h, b$h)
  expect_true(identical(a$p, b$p))   # not expect_identical: no 57M-element diff on failure
})

test_that("mse loss and layer freezing work", {
  train <- stripes(8, 6)
  net <- alexnet(labels = c("h", "v"), seed = 2)
  before <- alexnet:::net_params(net)
  freeze(net, through = "dense_2")
  expect_identical(trainable_layers(net), "dense_3")
  fit <- alexnet_train(net, train, epochs = 1, batch_size = 8, loss = "mse",
                       optimizer = sgd(lr = 0.1), seed = 1)
  after <- alexnet:::net_params(net)
  tab <- alexnet_layer_table(net)
  n_frozen <- sum(tab$params[seq_len(match("dense_2", tab$name))])   # conv_1 .. dense_2
  expect_true(identical(after[seq_len(n_frozen)], before[seq_len(n_frozen)]))
  expect_false(identical(after, before))
  expect_true(is.finite(fit$history$loss))
  unfreeze(net, from = "conv_5_1")
  expect_identical(trainable_layers(net), c("conv_5", "dense_1", "dense_2", "dense_3"))
})

test_that("an interrupt between batches returns the net and the finished epochs", {
  train <- stripes(16, 3)
  net <- alexnet(labels = c("h", "v"), seed = 1)
  steps <- 0  # 2 a epoch: the interrupt comes after the first step of epoch 2
  untrace_steps <- after_each_step(function(epoch) {
    steps <<- steps + 1
    if (steps == 3) send_interrupt()
  })
  on.exit(untrace_steps())
  expect_warning(
    fit <- alexnet_train(net, train, epochs = 3, batch_size = 8, optimizer = sgd(lr = 1e-5), seed = 1),
    "interrupted in epoch 2"
  )
  expect_true(fit$interrupted)
  expect_equal(nrow(fit$history), 1)
  # the net still works
  expect_equal(dim(predict(net, train)), c(16, 2))
})

test_that("print() of a net names its frozen layers; finetune names its stages", {
  net <- alexnet(labels = c("h", "v"), seed = 1)
  on.exit(release())
  expect_false(any(grepl("Frozen", capture.output(print(net)))))
  freeze(net, through = "dense_1")
  expect_output(print(net), "Frozen: conv_1, conv_2, conv_3, conv_4, conv_5, dense_1 \\(training changes only dense_2, dense_3\\)")
  msgs <- capture_messages(alexnet_finetune(net, stripes(4, 1), batch_size = 4, verbose = TRUE,
                                            schedule = finetune_schedule("dense_3", epochs = 1, lr = 1e-5)))
  expect_match(msgs, "Stage 1/1: training from dense_3 up", all = FALSE)
})

test_that("a fresh net and the default optimiser train from scratch", {
  net <- alexnet(labels = c("h", "v"), seed = 1)
  on.exit(release())
  expect_equal(.Call(C_net_scale, net$ptr, NULL), rep(1 / 255, 3), tolerance = 1e-7)
  # sgd()'s defaults are Keras' (lr 0.01, the seed's); with the seed's
  # scale 1 the same run diverges
  expect_no_warning(fit <- alexnet_train(net, stripes(32, 1), validation = stripes(16, 2), epochs = 6,
                                         batch_size = 16, seed = 1))
  expect_null(fit$diverged)
  expect_true(all(is.finite(fit$history$loss)))
  expect_lt(fit$history$loss[6], fit$history$loss[1] / 4)
  expect_gte(fit$history$val_accuracy[6], 0.9)
  seeds <- alexnet(labels = c("h", "v"), seed = 1, scale = 1)
  expect_warning(fit1 <- alexnet_train(seeds, stripes(32, 1), epochs = 1, batch_size = 16, seed = 1),
                 "training diverged")
  expect_match(fit1$diverged, "mean loss")
})

test_that("training reports each epoch by default, in Rscript too", {
  op <- options(alexnet.verbose = NULL)   # as in a fresh session
  on.exit(options(op))
  expect_false(interactive())
  net <- alexnet(labels = c("h", "v"), seed = 1)
  expect_message(alexnet_train(net, stripes(8, 1), validation = stripes(4, 2), epochs = 1, batch_size = 4, seed = 1),
                 "epoch 1/1: loss [0-9.]+, acc [0-9.]+; val loss [0-9.]+, acc [0-9.]+; [0-9.]+ s, [0-9]+ img/s")
  options(alexnet.verbose = FALSE)
  expect_silent(alexnet_train(net, stripes(8, 1), epochs = 1, batch_size = 4, seed = 1))
})

test_that("frozen layers computed once train exactly as computed every epoch", {
  train <- stripes(24, 1)
  test <- stripes(12, 2)
  run <- function(from, frozen_once, data = train, dropout = 0.5) {
    net <- alexnet(labels = c("h", "v"), seed = 4)
    unfreeze(net, from = from)
    fit <- alexnet_train(net, data, validation = test, epochs = 2, batch_size = 8, seed = 3,
                         dropout = dropout, optimizer = sgd(lr = 1e-3), frozen_once = frozen_once)
    list(fit = fit, digest = .Call(C_test_weights_digest, net$ptr))
  }
  for (from in c("dense_1", "dense_2", "dense_3")) {
    once <- run(from, TRUE)
    every <- run(from, FALSE)
    expect_identical(once$fit$frozen_once, if (from == "dense_1") "convpool_5" else "dense_1")
    expect_null(every$fit$frozen_once)
    expect_identical(once$fit$history[, 1:5], every$fit$history[, 1:5])
    expect_identical(once$digest, every$digest)
  }
  # without dropout the start rises to dense_2
  expect_identical(run("dense_3", TRUE, dropout = 0)$fit$frozen_once, "dense_2")
  # nothing frozen below convpool_5's input: no start
  expect_null(run("conv_5", TRUE)$fit$frozen_once)
  release()
})

test_that("frozen layers computed once: folders, augmentation and a progress note", {
  root <- tempfile("frozen")
  on.exit(unlink(root, recursive = TRUE))
  px <- stripes(8, 1)
  for (i in 1:8) {
    cls <- as.character(px$labels[i])
    dir.create(file.path(root, cls), recursive = TRUE, showWarnings = FALSE)
    .Call(C_test_write_jpeg, file.path(root, cls, sprintf("%d.jpg", i)),
          array(as.integer(round(px$pixels[i, , ])), c(32, 32)), 95L)
  }
  folder <- image_folder(root)
  net <- alexnet(labels = c("h", "v"), seed = 1)
  unfreeze(net, from = "dense_2")
  msgs <- capture_messages(fit <- alexnet_train(net, folder, epochs = 1, batch_size = 4, seed = 1, verbose = TRUE))
  expect_match(msgs, "Frozen layers up to dense_1 computed once", all = FALSE)
  expect_identical(fit$frozen_once, "dense_1")
  augmented <- image_folder(root, augment = image_augment())
  expect_null(alexnet_train(net, augmented, epochs = 1, batch_size = 4, seed = 1)$frozen_once)
  expect_error(alexnet_train(net, folder, epochs = 1, frozen_once = NA), "frozen_once", class = "alexnet_error")
  release()
})

test_that("frozen rows larger than the memory allowed go to a file, and train the same", {
  train <- stripes(24, 1)
  run <- function(frozen_once, memory = NULL) {
    op <- options(alexnet.frozen_memory = memory)
    on.exit(options(op))
    net <- alexnet(labels = c("h", "v"), seed = 4)
    unfreeze(net, from = "dense_2")
    msgs <- capture_messages(fit <- alexnet_train(net, train, epochs = 2, batch_size = 8, seed = 3,
                                                  frozen_once = frozen_once, verbose = TRUE))
    list(fit = fit, msgs = msgs, digest = .Call(C_test_weights_digest, net$ptr))
  }
  before <- list.files(tempdir(), "^alexnet-rows-")
  on_disk <- run(TRUE, memory = 0)
  every <- run(FALSE)
  expect_match(on_disk$msgs, "computed once \\([0-9.]+ s, 0\\.0 GB in a file in tempdir\\(\\)\\)", all = FALSE)
  expect_identical(on_disk$fit$frozen_once, "dense_1")
  expect_identical(on_disk$fit$history[, 1:5], every$fit$history[, 1:5])
  expect_identical(on_disk$digest, every$digest)
  expect_identical(list.files(tempdir(), "^alexnet-rows-"), before)
  # in memory by default: no file named
  in_memory <- run(TRUE)
  expect_false(any(grepl("in a file", in_memory$msgs)))
  expect_identical(in_memory$digest, every$digest)
  op <- options(alexnet.frozen_memory = "lots")
  on.exit(options(op))
  expect_error(alexnet_train(alexnet(labels = c("h", "v"), seed = 4), train, epochs = 1),
               "alexnet.frozen_memory", class = "alexnet_error")
  release()
})

test_that("a loss that explodes stops training, keeping the weights from before it", {
  train <- stripes(16, 3)
  net <- alexnet(labels = c("h", "v"), seed = 1, scale = 1)   # the seed's scale: lr 0.5 blows it up
  expect_warning(
    fit <- alexnet_train(net, train, epochs = 5, batch_size = 8, optimizer = sgd(lr = 0.5), seed = 1),
    "Training stopped in epoch .*training diverged"
  )
  expect_match(fit$diverged, "mean loss is")
  expect_lt(fit$steps, 10)
  expect_equal(nrow(fit$history), fit$steps %/% 2)
  expect_output(print(fit), "stopped: diverged")
  # the weights are those of the last step taken: finite, and they still predict
  expect_true(all(is.finite(predict(net, train))))
})

test_that("a checkpoint lets a run resume where it stopped", {
  train <- stripes(16, 4)
  file <- tempfile(fileext = ".rds")
  on.exit(unlink(file))
  straight <- alexnet(labels = c("h", "v"), seed = 5)
  full <- alexnet_train(straight, train, epochs = 2, batch_size = 8, optimizer = sgd(lr = 1e-5), seed = 6)
  resumed <- alexnet(labels = c("h", "v"), seed = 5)
  first <- alexnet_train(resumed, train, epochs = 1, batch_size = 8, optimizer = sgd(lr = 1e-5),
                         seed = 6, checkpoint = file)
  expect_true(file.exists(file))
  fresh <- alexnet(labels = c("h", "v"), seed = 99)   # a new session's net
  second <- alexnet_train(fresh, train, epochs = 2, batch_size = 8, optimizer = sgd(lr = 1e-5),
                          seed = 6, checkpoint = file)
  expect_equal(nrow(second$history), 2)
  expect_identical(second$history$loss, full$history$loss)
  expect_true(identical(alexnet:::net_params(fresh), alexnet:::net_params(straight)))
})

test_that("layer-wise fine-tuning runs its stages", {
  train <- stripes(8, 7)
  net <- alexnet(labels = c("h", "v"), seed = 1)
  fit <- alexnet_finetune(net, train, batch_size = 8, seed = 1,
                          schedule = finetune_schedule(c("dense_3", "conv_5_1"), epochs = 1,
                                                       lr = c(1e-4, 1e-5)))
  expect_identical(fit$history$stage, c("dense_3", "conv_5_1"))
  expect_identical(fit$history$epoch, 1:2)
  expect_identical(trainable_layers(net), c("conv_5", "dense_1", "dense_2", "dense_3"))
  s <- finetune_schedule()
  expect_identical(s$layer, c("dense_3", "dense_2", "dense_1", "conv_5", "conv_4", "conv_3", "conv_2", "conv_1"))
  expect_identical(s$lr, c(1e-2, rep(1e-3, 7)))
  expect_true(all(s$epochs == 10))
})

test_that("bad training arguments give clear errors", {
  train <- stripes(4, 8)
  net <- alexnet(labels = c("h", "v"), seed = 1)
  expect_error(alexnet_train(net, train, epochs = 0), "epochs", class = "alexnet_error")
  expect_error(sgd(lr = NA), "lr", class = "alexnet_error")
  expect_error(sgd(momentum = 1), "momentum", class = "alexnet_error")
  other <- image_array(train$pixels, labels = c("cat", "dog", "cat", "dog"))
  expect_error(alexnet_train(net, other, epochs = 1), "do not match", class = "alexnet_error")
  expect_error(alexnet_train(net, image_array(train$pixels), epochs = 1), "no labels",
               class = "alexnet_error")
  expect_error(alexnet_train(net, train, batch_size = -1), "batch_size", class = "alexnet_error")
  expect_error(finetune_schedule(c("dense_3", "conv_9")), "conv_9", class = "alexnet_error")
  expect_error(unfreeze(net, from = "softmax"), "not a layer with weights", class = "alexnet_error")
  expect_error(alexnet_train(net, train, loss = "hinge"), "should be one of")
})

test_that("history prints and plots", {
  h <- data.frame(epoch = 1:2, loss = c(0.7, 0.5), accuracy = c(0.5, 0.8), val_loss = c(0.7, 0.6),
                  val_accuracy = c(0.5, 0.7), lr = 0.01, seconds = 1)
  fit <- structure(list(history = h, interrupted = FALSE, loss = "mse"), class = "alexnet_fit")
  expect_output(print(fit), "2 epochs, loss mse")
  file <- tempfile(fileext = ".png")
  on.exit(unlink(file))
  grDevices::png(file)
  expect_invisible(plot(fit))
  grDevices::dev.off()
  expect_gt(file.size(file), 1000)
  # whole epochs on the axis, also for a history of one
  expect_identical(alexnet:::epoch_ticks(1L), 1)
  expect_identical(alexnet:::epoch_ticks(3L), c(1, 2, 3))
  expect_true(all(alexnet:::epoch_ticks(40L) %% 1 == 0))
})
