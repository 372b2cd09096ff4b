# The network object: creation, printing, layer tables, parameters.

# Facts of the network that the engine owns (each variant's layer names,
# input, what each step does, parameter counts) are read from the engine
# when the package loads (.onLoad, R/alexnet-package.R: arch_facts()), never
# repeated here.

#' Create an AlexNet network
#'
#' Builds an AlexNet with a last dense layer of `classes` units followed by a
#' softmax, in one of three variants (`arch`):
#' * `"heuritech"` (the default): the network of the Heuritech
#'   `convnets-keras` model, the seed's: grouped convolutions in layers 2, 4
#'   and 5, convolution, pooling, then cross-channel LRN in the first two
#'   blocks; 227 x 227 input.
#' * `"caffe"`: BVLC's `bvlc_alexnet` from Caffe's model zoo: the same
#'   layers, but LRN before pooling and Caffe's LRN (alpha divided by the
#'   window, k = 1); 227 x 227 input.
#' * `"torchvision"`: torchvision's `alexnet` (the "one weird trick"
#'   variant): 64, 192, 384, 256 and 256 filters, no groups, no LRN, the
#'   first convolution padded by 2; 224 x 224 input.
#'
#' A weights file sets the variant (see `weights`). Weights are drawn with the
#' `he_normal` initialisation (normal with standard deviation
#' `sqrt(2 / fan_in)`), biases are zero.
#'
#' The network lives in compiled memory, outside R: it cannot be saved with
#' [save()] or [saveRDS()] and used again in another session (such a copy is
#' reported as no longer valid). Printing it shows the layer table (see
#' [alexnet_layer_table()]) and the number of parameters: 56,876,418 for 2
#' classes, 60,965,224 for 1000 (grouped convolutions; torchvision's: 61,100,840).
#' Each network holds its parameters in single precision, about 4 bytes per
#' parameter.
#'
#' @param classes Number of classes, the size of the last dense layer
#'   (`dense_3`). When `labels` is given and `classes` is not, the number of
#'   labels.
#' @param seed Seed of the weight initialisation: a whole number between 0
#'   and 2^53. `NULL` (the default) draws one from R's random number
#'   generator, so [set.seed()] makes it reproducible.
#' @param device Where the network runs: `"auto"` (the default: the first
#'   CUDA GPU when the package was built with its GPU backend and a GPU is
#'   present, else the CPU), `"cpu"`, `"cuda"` (the first GPU) or `"cuda:N"`
#'   (GPU `N`, counted from 0). Asking for a GPU where there is none gives
#'   one message and the CPU. See [alexnet_backend()] and [alexnet_to()].
#' @param mean Per-channel means (red, green, blue) subtracted from the input
#'   pixels (0..255 scale) inside the network; one number is used for all
#'   three channels, each within 0..255. The default (`NULL`) is the mean the
#'   variant was trained with: ImageNet's (123.68, 116.779, 103.939) for
#'   `"heuritech"`, Caffe's mean image averaged per channel for `"caffe"`,
#'   torchvision's `255 * (0.485, 0.456, 0.406)` for `"torchvision"`. Use `0`
#'   to feed pixels unchanged.
#' @param scale The input fed to the network is `(pixel - mean) * scale`:
#'   one number, or one per channel (red, green, blue). The default (`NULL`)
#'   is `1/255` for a fresh `"heuritech"` or `"caffe"` network, which keeps
#'   the outputs of a freshly initialised (`he_normal`) network moderate, so
#'   that training from scratch with the default [sgd()] is stable, and
#'   torchvision's `1 / (255 * (0.229, 0.224, 0.225))` for `"torchvision"`. A
#'   weights file brings its own convention unless `scale` is given: the
#'   package's files the scale they were saved with, Keras 1 (Heuritech) and
#'   Caffe files `1`, torchvision files their standard deviations. The
#'   seed's settings, `scale = 1` with `sgd(lr = 0.01)`, make a fresh network
#'   diverge (its logits reach about 50); [alexnet_train()] then stops with a
#'   warning. Between 1e-30 and 1e30 (the engine computes in single
#'   precision).
#' @param labels Class names, one per class; by default `"1"`, `"2"`, ...
#'   They name the columns of the probabilities and the levels of the class
#'   predictions of [predict.alexnet()].
#' @param weights `NULL` (the default: `he_normal` weights), or a weights
#'   file loaded into the new network by layer name (see [load_weights()]),
#'   whose format is found from its content: a file written by
#'   [save_weights()], a Keras 1 file such as the Heuritech
#'   `alexnet_weights.h5`, Caffe's `bvlc_alexnet.caffemodel` or torchvision's
#'   `alexnet-owt-7be5be79.pth` (see the README for where to download them).
#'   The file sets the variant (`arch`) and the input convention. When
#'   neither `classes` nor `labels` is given, they are taken from the file
#'   (its number of classes and, for the package's files, its class names;
#'   the 1000 classes of a Keras, Caffe or torchvision ImageNet file are
#'   named by [imagenet_classes()]). A layer of another shape in the file
#'   keeps the new network's own weights: `alexnet(classes = 2, weights =
#'   "alexnet_weights.h5")` loads the 10 other layers of the 1000-class
#'   Heuritech file and keeps its own 2-class `dense_3`. A file of the package
#'   also sets the input means, unless `mean` is given. The returned network
#'   has the load report (see [load_weights()]) in its attribute
#'   `"weights_report"`; in an interactive session it is also printed.
#'
#' @param arch The variant: `"heuritech"`, `"caffe"` or `"torchvision"`
#'   (see above). The default (`NULL`) is the weights file's variant, else
#'   `"heuritech"`.
#' @param precision `"f32"` (the default: single precision throughout) or
#'   `"bf16"`: the convolutions multiply in bfloat16 and add in single
#'   precision, about twice as fast on CPUs with AVX512_BF16 (Intel Cooper
#'   Lake and Sapphire Rapids, AMD Zen 4); everything else stays single
#'   precision. See [alexnet_precision()].
#'
#' @return An object of class `"alexnet"`: a reference to the network in
#'   engine memory, with fields `classes`, `labels`, `seed`, `arch`, `device`
#'   and `precision` (the last three read from the engine).
#'   `net$device` (`"cpu"` or `"cuda:N"`) is read from the engine each time,
#'   so it always names where the network is now, also after [alexnet_to()];
#'   it is `NA` for a network that is no longer valid (saved and reloaded).
#'   It cannot be assigned: use [alexnet_to()].
#' @seealso [alexnet_features()], [predict.alexnet()], [alexnet_layer_table()]
#' @export
#' @examples
#' net <- alexnet(classes = 2, seed = 1, labels = c("cat", "dog"))
#' net
alexnet <- function(classes = 1000, seed = NULL, device = "auto",
                    mean = NULL, scale = NULL, labels = NULL,
                    weights = NULL, precision = "f32", arch = NULL) {
  mean_given <- !is.null(mean)
  scale_given <- !is.null(scale)
  archs <- names(.engine_facts$archs)
  if (!is.null(arch) && (!is.character(arch) || length(arch) != 1L || !arch %in% archs)) {
    abort("{.arg arch} must be one of {.val {archs}}.")
  }
  if (!is.null(weights)) {
    check_string(weights)
    info <- weights_file_info(weights)
    if (!is.null(arch) && arch != info$arch) {
      abort(c("{.arg arch} is {.val {arch}}, but the weights file {.file {weights}} holds the {.val {info$arch}} variant.",
              i = "Leave {.arg arch} out: the file sets it."))
    }
    arch <- info$arch
    if (missing(classes) && is.null(labels)) {
      if (is.na(info$classes)) {
        abort(c("The weights file {.file {weights}} has no {.val dense_3} layer, so its number of classes is unknown.",
                i = "Give {.arg classes}."))
      }
      classes <- info$classes
    }
    if (is.null(labels) && isTRUE(length(info$class_names) == classes)) {
      labels <- info$class_names
    } else if (is.null(labels) && isTRUE(classes == 1000) && info$kind %in% c("keras1", "caffe", "torch")) {
      labels <- imagenet_classes()   # the ILSVRC-2012 classes, in every ImageNet file's order
    }
  }
  if (is.null(arch)) arch <- "heuritech"
  facts <- arch_facts(arch)
  if (missing(classes) && !is.null(labels)) {
    classes <- length(labels)
  }
  classes <- check_count(classes)
  check_classes_memory(classes)
  device <- check_device(device)
  precision <- check_precision(precision)
  seed <- check_seed(seed)
  if (is.null(mean)) mean <- facts$mean
  mean <- check_mean(mean)
  labels <- check_class_labels(labels, classes)
  if (is.null(scale)) scale <- if (arch == "torchvision") facts$scale else 1 / 255
  scale <- check_scale(scale)
  # weights from a file: nothing drawn now, only the layers it lacks below
  ptr <- engine(.Call(C_net_create, classes, seed, mean, arch, is.null(weights)))
  .Call(C_net_scale, ptr, scale)
  if (device != "cpu") {
    engine(.Call(C_net_set_device, ptr, device_ordinal(device)))
  }
  net <- structure(
    list(ptr = ptr, classes = classes, labels = labels, seed = seed),
    class = "alexnet"
  )
  if (!is.null(weights)) {
    loaded <- load_weights_into(net, weights, by_name = TRUE, verbose = interactive(),
                                undo = FALSE, call = environment())
    report <- loaded$report
    drawn <- unique(sub("_[12]$", "", report$layer[report$status != "loaded"]))
    .Call(C_net_init_layers, ptr, seed, .param_layers %in% drawn)
    # explicit arguments win over the file's preprocessing
    if (mean_given) {
      .Call(C_net_set_mean, ptr, mean)
    }
    if (scale_given) {
      .Call(C_net_scale, ptr, scale)
    }
    attr(net, "weights_report") <- loaded$report
  }
  if (precision != "f32") {
    alexnet_precision(net, precision)
  }
  net
}

# One positive number, or one per channel, within single precision's range.
check_scale <- function(scale, call = caller_env()) {
  if (!is.numeric(scale) || !length(scale) %in% c(1L, 3L) || anyNA(scale) || any(scale <= 0)) {
    abort("{.arg scale} must be one positive number or three (red, green, blue).", call = call)
  }
  if (any(scale < 1e-30 | scale > 1e30)) {
    # the engine computes in single precision, where it would round to 0 or Inf
    abort("{.arg scale} is {format(scale)}: it must lie between 1e-30 and 1e30.", call = call)
  }
  as.double(scale)
}

# The variant of a net ("heuritech", "caffe", "torchvision") and its input side.
net_arch <- function(net) .Call(C_net_arch, .subset2(net, "ptr"))
net_input_size <- function(net) arch_facts(net)$input_size
arch_title <- function(arch) {
  switch(arch, heuritech = "Heuritech's, the seed's", caffe = "BVLC Caffe's", torchvision = "torchvision's")
}

# "auto", "cpu", "cuda", "gpu", "cuda:N" -> "cpu" or "cuda:N" (N a usable GPU).
# No GPU at all is not an error: one message, then the CPU.
check_device <- function(device, call = caller_env()) {
  choices <- c("auto", "cpu", "cuda", "cuda:N")
  if (!is.character(device) || length(device) != 1L || is.na(device)) {
    abort("{.arg device} must be one of {.val {choices}}.", call = call)
  }
  device <- tolower(device)
  if (device == "gpu") device <- "cuda"
  if (device == "cuda") device <- "cuda:0"
  if (!device %in% c("auto", "cpu") && !grepl("^cuda:[0-9]+$", device)) {
    abort("{.arg device} must be one of {.val {choices}}, not {.val {device}}.", call = call)
  }
  if (device == "cpu") {
    return("cpu")
  }
  info <- .Call(C_cuda_info)
  gpus <- length(info$devices)
  if (device == "auto") {
    # in an MPI group, each rank of a machine takes its own GPU
    gpu <- if (is.null(mpi_state$gpu)) 0L else mpi_state$gpu
    return(if (gpus > 0L && gpu >= 0L) sprintf("cuda:%d", gpu) else "cpu")
  }
  if (gpus == 0L) {
    why <- if (info$built) sprintf("no CUDA GPU is usable on this machine (%s)", info$why) else
      "this build of alexnet has no GPU backend (configure found no CUDA toolkit with cuDNN)"
    cli::cli_inform(c("!" = "{.arg device} is {.val {device}}, but {why}: the network runs on the CPU."),
                    class = "alexnet_device_fallback")
    return("cpu")
  }
  ordinal <- as.integer(sub("^cuda:", "", device))
  if (is.na(ordinal) || ordinal >= gpus) {
    abort(c("{.arg device} is {.val {device}}, but this machine has {gpus} GPU{?s}.",
            i = "Use {.val {paste0('cuda:', seq_len(gpus) - 1L)}}."), call = call)
  }
  device
}

device_ordinal <- function(device) {
  if (device == "cpu") -1L else as.integer(sub("^cuda:", "", device))
}

#' Move a network to another device
#'
#' Moves the network's weights and its optimizer state (SGD momentum and
#' iteration count) to the CPU or a GPU; training and feature extraction then
#' run there.
#'
#' @section Reference semantics:
#' Unlike most R objects, a network is a reference to memory of the compiled
#' engine, and `alexnet_to()` changes that memory **in place**: the network
#' given as `net`, and every copy of it (`net2 <- net` shares the same
#' engine network), is on the new device afterwards, whether or not the
#' result is assigned. `net$device` is read from the engine, so it is always
#' right: `alexnet_to(net, "cpu")` alone and `net <- alexnet_to(net, "cpu")`
#' do the same. To keep a network on one device and have another on a second
#' one, create or load a second network (for example with
#' `alexnet(weights = )` from a file written by [save_weights()]).
#'
#' @param net An [alexnet()] network.
#' @param device `"cpu"`, `"cuda"`, `"cuda:N"` or `"auto"`, as in [alexnet()].
#' @return `net` (the same network), invisibly.
#' @seealso [alexnet_backend()] for the devices there are.
#' @export
#' @examples
#' net <- alexnet(classes = 2, seed = 1, device = "cpu")
#' alexnet_to(net, "auto")   # no need to reassign: net itself has moved
#' net$device
alexnet_to <- function(net, device) {
  check_net(net)
  device <- check_device(device)
  was <- net$precision
  engine(.Call(C_net_set_device, net$ptr, device_ordinal(device)))
  if (was != net$precision) {
    why <- .Call(C_net_bf16_missing, net$ptr)
    cli::cli_inform(c("!" = "The network was in {.val {was}}, but on {.val {device}} {why}: it computes in {.val {net$precision}}."),
                    class = "alexnet_precision_fallback")
  }
  invisible(net)
}

#' Precision of a network's arithmetic
#'
#' Gets or sets whether a network's convolutions multiply in bfloat16.
#'
#' In `"bf16"` the convolutions round their inputs, weights and (in
#' training) output gradients to bfloat16 (8 significant bits) and add the
#' exact products in single precision; the parameters, the activations
#' handed between layers, the dense layers, softmax, loss and the SGD update
#' stay in single precision, so features and predictions come back as
#' before and the weights saved are the single-precision master copy (the
#' bfloat16 copies are made anew after each update). Loss scaling is not
#' needed: bfloat16 has single precision's range. On the CPU it needs the
#' AVX512_BF16 instructions (Intel Cooper Lake and Sapphire Rapids, AMD Zen
#' 4), where the convolutions run about twice as fast; elsewhere asking for
#' it gives one message and the network stays in `"f32"` (never a slow
#' emulation). On a GPU it needs bfloat16 tensor cores (Ampere or newer),
#' where cuDNN multiplies the same bfloat16 operands and rounds each
#' convolution's output to bfloat16 before widening it again; those
#' kernels have not yet been run on a GPU against the CPU, so they are used
#' only where the environment variable `AN_CUDA_BF16` is `"1"` (the
#' package's GPU check sets it), and otherwise the network computes in
#' `"f32"` there, with a message saying so. Features differ from `"f32"` by
#' about 0.5% of their largest value, as PyTorch's bfloat16 autocast does.
#'
#' Like [alexnet_to()], this changes the network **in place**.
#'
#' @param net A network made by [alexnet()].
#' @param precision `NULL` to query, or `"f32"` or `"bf16"`.
#' @return With `precision = NULL`, the precision (`"f32"` or `"bf16"`);
#'   otherwise, invisibly, the network.
#' @seealso [alexnet_backend()] says whether each device runs bfloat16.
#' @export
#' @examples
#' net <- alexnet(classes = 2, seed = 1)
#' alexnet_precision(net)
#' alexnet_precision(net, "bf16")   # a message where the CPU lacks AVX512_BF16
#' net$precision
alexnet_precision <- function(net, precision = NULL) {
  check_net(net)
  if (is.null(precision)) {
    return(.Call(C_net_precision, net$ptr))
  }
  precision <- check_precision(precision)
  if (precision == "bf16") {
    why <- .Call(C_net_bf16_missing, net$ptr)
    if (!is.null(why)) {
      inform_bf16_missing(why, "the network computes")
      return(invisible(net))
    }
  }
  engine(.Call(C_net_set_precision, net$ptr, precision))
  invisible(net)
}

# the one message where bf16 was asked for and is missing: `who` keeps f32
inform_bf16_missing <- function(why, who) {
  cli::cli_inform(c("!" = "{.arg precision} is {.val bf16}, but {why}: {who} in {.val f32}."),
                  class = "alexnet_precision_fallback")
}

check_precision <- function(precision, call = caller_env()) {
  choices <- c("f32", "bf16")
  if (!is.character(precision) || length(precision) != 1L || is.na(precision) ||
      !tolower(precision) %in% choices) {
    abort("{.arg precision} must be {.or {.val {choices}}}.", call = call)
  }
  tolower(precision)
}

net_precision <- function(net) {
  ptr <- .subset2(net, "ptr")
  if (!isTRUE(.Call(C_net_valid, ptr))) {
    return(NA_character_)
  }
  .Call(C_net_precision, ptr)
}

# Where a network is now, from the engine: "cpu" or "cuda:N"; NA for a
# network that is no longer valid (serialized, or freed).
net_device <- function(net) {
  ptr <- .subset2(net, "ptr")
  if (!isTRUE(.Call(C_net_valid, ptr))) {
    return(NA_character_)
  }
  ordinal <- .Call(C_net_device, ptr)
  if (ordinal < 0L) "cpu" else sprintf("cuda:%d", ordinal)
}

# `net$device` and `net[["device"]]` come from the engine (see net_device()),
# never from a copy of the list that alexnet_to() could leave stale; the other
# fields are the list's own.
#' @export
`$.alexnet` <- function(x, name) {
  if (name %in% engine_fields) engine_field(x, name) else NextMethod()
}

#' @export
`[[.alexnet` <- function(x, i, ...) {
  if (is.character(i) && length(i) == 1L && i %in% engine_fields) engine_field(x, i) else NextMethod()
}

# fields that are the engine's, read each time (never a stale copy in the list)
engine_fields <- c("device", "precision", "arch")
engine_field <- function(net, name) {
  switch(name, device = net_device(net), precision = net_precision(net),
         arch = if (isTRUE(.Call(C_net_valid, .subset2(net, "ptr")))) net_arch(net) else NA_character_)
}

#' @export
`$<-.alexnet` <- function(x, name, value) {
  abort_engine_assignment(name)
  NextMethod()
}

#' @export
`[[<-.alexnet` <- function(x, i, ..., value) {
  abort_engine_assignment(i)
  NextMethod()
}

abort_engine_assignment <- function(name, call = caller_env(2L)) {
  if (identical(name, "device")) {
    abort(c("The device of a network cannot be assigned: it is where the engine holds the network.",
            i = "Move it with {.fn alexnet_to}, e.g. {.code alexnet_to(net, \"cpu\")}."),
          call = call)
  }
  if (identical(name, "precision")) {
    abort(c("The precision of a network cannot be assigned: the engine holds it.",
            i = "Set it with {.fn alexnet_precision}, e.g. {.code alexnet_precision(net, \"bf16\")}."),
          call = call)
  }
}

check_seed <- function(seed, call = caller_env()) {
  if (is.null(seed)) {
    return(as.double(sample.int(.Machine$integer.max, 1L)))
  }
  if (!is.numeric(seed) || length(seed) != 1L || is.na(seed) || !is.finite(seed) ||
      seed != round(seed) || seed < 0 || seed > 2^53) {
    abort("{.arg seed} must be NULL or a single whole number between 0 and 2^53.",
          call = call)
  }
  as.double(seed)
}

check_class_labels <- function(labels, classes, call = caller_env()) {
  if (is.null(labels)) {
    return(as.character(seq_len(classes)))
  }
  if (is.factor(labels)) {
    labels <- as.character(labels)
  }
  if (!is.atomic(labels) || is.list(labels)) {
    abort("{.arg labels} must be a character vector of class names.", call = call)
  }
  labels <- as.character(labels)
  if (length(labels) != classes) {
    abort("{.arg labels} has {length(labels)} name{?s} but {.arg classes} is {classes}.",
          call = call)
  }
  if (anyNA(labels) || any(labels == "")) {
    abort("{.arg labels} must not contain missing or empty names.", call = call)
  }
  if (anyDuplicated(labels)) {
    abort("{.arg labels} must be unique; {.val {unique(labels[duplicated(labels)])}} {?is/are} repeated.",
          call = call)
  }
  labels
}

#' Names of the layers whose activations can be extracted
#'
#' The named outputs of a network, in graph order, valid as `layer` in
#' [alexnet_features()]. For the `"heuritech"` variant they are the
#' Heuritech/Keras names: `conv_1`, `pool_1`, `convpool_1` (after the first
#' LRN), `conv_2` (both groups concatenated), `pool_2`, `lrn_2`, `conv_3`,
#' `conv_4`, `conv_5`, `convpool_5` (256 x 6 x 6, the usual feature layer),
#' `dense_1`, `dense_2`, `dense_3` (logits) and `softmax` (class
#' probabilities). Every variant has the convolutions, `convpool_1` (the
#' first block's output), `convpool_5`, the dense layers and `softmax`;
#' Caffe's has `lrn_1`, `lrn_2` and `pool_2` between them, torchvision's
#' only `pool_2`.
#'
#' @param x A network made by [alexnet()], or the name of a variant
#'   (`"heuritech"`, `"caffe"`, `"torchvision"`).
#' @return A character vector.
#' @seealso [alexnet_layer_table()] for their shapes.
#' @export
#' @examples
#' alexnet_layers()
#' alexnet_layers("torchvision")
alexnet_layers <- function(x = "heuritech") {
  archs <- names(.engine_facts$archs)
  if (!inherits(x, "alexnet") && (!is.character(x) || length(x) != 1L || !x %in% archs)) {
    abort("{.arg x} must be a network or one of {.val {archs}}.")
  }
  arch_facts(x)$layers
}


#' Layer table of a network
#'
#' One row per step of the network, with the Heuritech names: the grouped
#' convolutions show as two rows each (`conv_2_1` and `conv_2_2`, ...) with
#' the parameters of their group, followed by a row for the concatenated
#' output (`conv_2`, ...).
#'
#' @param net A network made by [alexnet()].
#' @return A data frame with columns `name`, `operation`, `output` (the
#'   shape per image as text: channels x height x width, or the number of
#'   units of dense layers), `channels`, `height`,
#'   `width`, `params` (number of parameters of the row) and `feature`
#'   (whether `name` can be used as `layer` in [alexnet_features()]); the
#'   parameters sum to the size of the network.
#' @export
#' @examples
#' net <- alexnet(classes = 2, seed = 1)
#' tab <- alexnet_layer_table(net)
#' tab[, c("name", "output", "params")]
#' sum(tab$params)
alexnet_layer_table <- function(net) {
  check_net(net)
  outs <- .Call(C_net_outputs, net$ptr)
  lay <- .Call(C_net_layers, net$ptr)
  rows <- list()
  add <- function(name, operation, c, h, w, params, feature) {
    shape <- if (h == 1L && w == 1L) as.character(c) else paste(c, h, w, sep = "x")
    rows[[length(rows) + 1L]] <<- data.frame(
      name = name, operation = operation, output = shape,
      channels = as.integer(c), height = as.integer(h), width = as.integer(w),
      params = as.double(params), feature = feature, stringsAsFactors = FALSE
    )
  }
  for (i in seq_along(outs$name)) {
    name <- outs$name[i]
    j <- match(name, lay$name)
    if (is.na(j)) {
      add(name, unname(arch_facts(net)$operations[name]), outs$c[i], outs$h[i], outs$w[i], 0, TRUE)
      next
    }
    relu <- if (lay$relu[j]) ", ReLU" else ""
    params <- lay$weight_count[j] + lay$bias_count[j]
    groups <- lay$groups[j]
    if (lay$kind[j] == "conv") {
      pad <- if (lay$pad[j] > 0) sprintf(", pad %d", lay$pad[j]) else ""
      op <- sprintf("conv %dx%d/%d%s%s", lay$kh[j], lay$kw[j], lay$stride[j], pad, relu)
    } else {
      op <- sprintf("dense %d -> %d%s", lay$`in`[j], lay$out[j], relu)
    }
    if (groups > 1L) {
      for (g in seq_len(groups)) {
        add(paste0(name, "_", g),
            sprintf("%s, group %d/%d", op, g, groups),
            outs$c[i] %/% groups, outs$h[i], outs$w[i], params / groups, FALSE)
      }
      add(name, sprintf("concatenate %s", paste0(name, "_", seq_len(groups), collapse = " ")),
          outs$c[i], outs$h[i], outs$w[i], 0, TRUE)
    } else {
      add(name, op, outs$c[i], outs$h[i], outs$w[i], params, TRUE)
    }
  }
  tab <- do.call(rbind, rows)
  rownames(tab) <- NULL
  tab
}

#' @export
print.alexnet <- function(x, ...) {
  if (!isTRUE(.Call(C_net_valid, x$ptr))) {
    cat("<alexnet> an invalid network (saved and reloaded?): create it again with alexnet()\n")
    return(invisible(x))
  }
  tab <- alexnet_layer_table(x)
  mean <- .Call(C_net_get_mean, x$ptr)
  labels <- x$labels
  shown <- if (length(labels) > 6L) {
    paste0(paste(utils::head(labels, 5L), collapse = ", "), ", ..., ", labels[length(labels)])
  } else {
    paste(labels, collapse = ", ")
  }
  cat(sprintf("<alexnet> AlexNet (%s), %d class%s (%s), seed %s\n", arch_title(net_arch(x)), x$classes,
              if (x$classes == 1L) "" else "es", shown, format(x$seed, scientific = FALSE)))
  cat(sprintf("device: %s\n", device_description(x$device)))
  cat(sprintf("precision: %s\n", if (x$precision == "bf16") "bf16 (convolutions multiply in bfloat16, add in f32)" else "f32"))
  scale <- .Call(C_net_scale, x$ptr, NULL)
  side <- net_input_size(x)
  times <- if (all(scale == 1)) "" else if (all(scale == scale[1L])) sprintf(", times %s", format(signif(scale[1L], 4)))
           else sprintf(", times (%s)", paste(vapply(signif(scale, 4), format, ""), collapse = ", "))
  cat(sprintf("input: 3x%dx%d RGB, 0..255, minus the mean (%s)%s\n\n", side, side,
              paste(vapply(signif(mean, 7), format, ""), collapse = ", "), times))
  cols <- list(
    layer = c("layer", "input", tab$name),
    operation = c("operation", "", tab$operation),
    output = c("output", sprintf("3x%dx%d", side, side), tab$output),
    params = c("params", "0", format(tab$params, big.mark = ",", scientific = FALSE, trim = TRUE))
  )
  w <- vapply(cols, function(v) max(nchar(v)), 1L)
  lines <- paste(formatC(cols$layer, width = -w[1L]), formatC(cols$operation, width = -w[2L]),
                 formatC(cols$output, width = -w[3L]), formatC(cols$params, width = w[4L]),
                 sep = "  ")
  cat(paste0(" ", lines, "\n"), sep = "")
  total <- sum(tab$params)
  cat(sprintf("\nTotal parameters: %s\n", format(total, big.mark = ",", scientific = FALSE)))
  learning <- trainable_layers(x)
  if (length(learning) < length(.param_layers)) {
    cat(sprintf("Frozen: %s (training changes only %s)\n",
                paste(setdiff(.param_layers, learning), collapse = ", "), paste(learning, collapse = ", ")))
  }
  cat(sprintf("Layers for alexnet_features(): %s\n", paste(alexnet_layers(x), collapse = ", ")))
  invisible(x)
}

#' Class probabilities or labels
#'
#' @param object A network made by [alexnet()].
#' @param newdata Images, as for [alexnet_features()]: an [image_array()],
#'   an [image_folder()], JPEG file paths, or a numeric array of pixels (see
#'   [image_array()] for the layout).
#' @param type `"prob"` for the matrix of class probabilities (the softmax
#'   output), `"class"` for the most probable class of each image.
#' @param batch_size Number of images run through the network at once.
#' @param ... Not used.
#' @return For `type = "prob"`, a numeric matrix with one row per image and
#'   one column per class, named by the class labels of the network; each row
#'   sums to 1. For `type = "class"`, a factor with the labels of the network
#'   as levels.
#' @export
#' @examples
#' net <- alexnet(classes = 2, seed = 1, labels = c("cat", "dog"))
#' px <- array(runif(2 * 28 * 28 * 3, 0, 255), dim = c(2, 28, 28, 3))
#' predict(net, px)
#' predict(net, px, type = "class")
predict.alexnet <- function(object, newdata, type = c("prob", "class"), batch_size = 32, ...) {
  check_net(object)
  if (missing(newdata)) {
    abort("{.arg newdata} is missing: give the images to predict.")
  }
  if (!is.character(type) || length(type) < 1L || is.na(type[1L]) ||
      !type[1L] %in% c("prob", "class")) {
    abort("{.arg type} must be {.val prob} or {.val class}.")
  }
  type <- type[1L]
  batch_size <- check_count(batch_size)
  images <- as_source(newdata, arg = "newdata", scan = FALSE)
  prob <- forward(object, images, "softmax", batch_size)
  if (type == "class") {
    return(factor(object$labels[max.col(prob, ties.method = "first")], levels = object$labels))
  }
  colnames(prob) <- object$labels
  prob
}

# Parameters as one numeric vector, in the engine's order (see
# alexnet_layer_table() and the offsets of .Call(C_net_layers)). Internal:
# for tests, and later for saving and loading.
net_params <- function(net) {
  check_net(net)
  .Call(C_net_get_params, net$ptr)
}

set_net_params <- function(net, value) {
  check_net(net)
  if (!is.numeric(value)) {
    abort("{.arg value} must be a numeric vector.")
  }
  n <- .Call(C_net_param_count, net$ptr)
  if (length(value) != n) {
    abort("{.arg value} must have {n} elements, not {length(value)}.")
  }
  engine(.Call(C_net_set_params, net$ptr, as.double(value)))
  invisible(net)
}

net_param_count <- function(net) {
  check_net(net)
  .Call(C_net_param_count, net$ptr)
}
