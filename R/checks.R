# Argument checks. Every user-facing error is signalled with abort() so that
# it has class "alexnet_error" and names the argument at fault.

abort <- function(message, ..., call = caller_env(), .envir = parent.frame()) {
  cli::cli_abort(message, ..., class = "alexnet_error", call = call, .envir = .envir)
}

# Run an engine call, turning its R error into an "alexnet_error".
engine <- function(expr, call = caller_env()) {
  tryCatch(expr, error = function(e) {
    msg <- conditionMessage(e)
    abort(c("The alexnet engine failed.", x = "{msg}"), call = call)
  })
}

check_count <- function(x, arg = caller_arg(x), call = caller_env(),
                        min = 1) {
  if (!is.numeric(x) || length(x) != 1L || is.na(x) || !is.finite(x) ||
      x != round(x) || x < min || x > .Machine$integer.max) {
    what <- if (is.numeric(x) && length(x) == 1L) {
      format(x)
    } else if (is.null(x)) {
      "NULL"
    } else {
      paste0("a ", class(x)[1L], " of length ", length(x))
    }
    abort("{.arg {arg}} must be a single whole number of at least {min}, not {what}.",
          call = call)
  }
  as.integer(x)
}

check_string <- function(x, arg = caller_arg(x), call = caller_env()) {
  if (!is.character(x) || length(x) != 1L || is.na(x)) {
    abort("{.arg {arg}} must be a single string.", call = call)
  }
  x
}

check_flag <- function(x, arg = caller_arg(x), call = caller_env()) {
  if (!is.logical(x) || length(x) != 1L || is.na(x)) {
    abort("{.arg {arg}} must be TRUE or FALSE.", call = call)
  }
  x
}

check_mean <- function(mean, arg = caller_arg(mean), call = caller_env()) {
  if (!is.numeric(mean) || !(length(mean) %in% c(1L, 3L)) || anyNA(mean) ||
      !all(is.finite(mean)) || any(mean < 0 | mean > 255)) {
    abort(c("{.arg {arg}} must be 1 or 3 numbers within a pixel's range 0..255 (per-channel means, R, G, B).",
            i = "The default is the ImageNet mean {.code c(123.68, 116.779, 103.939)}."),
          call = call)
  }
  as.double(rep_len(mean, 3L))
}

check_net <- function(net, arg = caller_arg(net), call = caller_env()) {
  if (!inherits(net, "alexnet")) {
    abort("{.arg {arg}} must be an alexnet network made by {.fn alexnet}, not {.obj_type_friendly {net}}.",
          call = call)
  }
  if (!isTRUE(.Call(C_net_valid, net$ptr))) {
    abort(c("This alexnet object is no longer valid (saved and reloaded?).",
            i = "Networks live in compiled memory, which {.fn saveRDS} and saved workspaces do not keep: save the weights with {.fn save_weights} and load them with {.code alexnet(weights = )}."),
          call = call)
  }
  invisible(net)
}

# `net`: a net, or the name of a variant
check_layer <- function(layer, net, arg = caller_arg(layer), call = caller_env()) {
  valid <- alexnet_layers(net)
  if (!is.character(layer) || length(layer) != 1L || is.na(layer)) {
    abort(c("{.arg {arg}} must be a single layer name.",
            i = "Valid names: {.val {valid}}."), call = call)
  }
  if (!layer %in% valid) {
    hint <- if (grepl("^conv_[245]_[12]$", layer)) {
      c(i = "The grouped halves are computed together: use {.val {sub('_[12]$', '', layer)}}.")
    }
    abort(c("{.arg {arg}} is {.val {layer}}, which is not a layer name.",
            i = "Valid names: {.val {valid}}.", hint), call = call)
  }
  layer
}

check_labels <- function(labels, n, arg = caller_arg(labels),
                         call = caller_env()) {
  if (is.null(labels)) {
    return(NULL)
  }
  if (is.list(labels) || !is.atomic(labels) || !is.null(dim(labels))) {
    abort("{.arg {arg}} must be a vector or factor with one label per image.", call = call)
  }
  if (length(labels) != n) {
    abort("{.arg {arg}} has {length(labels)} label{?s} but there {cli::qty(n)}{?is/are} {n} image{?s}.",
          call = call)
  }
  if (anyNA(labels)) {
    abort("{.arg {arg}} must not contain missing values (NA).", call = call)
  }
  if (!is.factor(labels)) {
    labels <- factor(labels)
  }
  labels
}

# ------------------------------------------------------------------ memory --
# Work that cannot fit in memory is refused here, with a clear error, before
# anything is allocated (the engine has its own last-line check on a batch's
# activations). The estimates are the engine's, asked of it (per image the
# input and every activation, with room for blocked layouts, twice that when
# training), and the glue's: its input and output buffers, the JPEG loader's
# two batch slots, the result matrix.

phys_memory <- function() .Call(C_phys_memory)

format_gb <- function(bytes) sprintf("%.1f GB", bytes / 1e9)

check_batch_memory <- function(net, n, batch_size, layer = NULL, training = FALSE,
                               folder = FALSE, call = caller_env()) {
  phys <- phys_memory()
  if (is.na(phys)) {
    return(invisible())
  }
  limit <- 0.8 * phys
  outs <- .Call(C_net_outputs, net$ptr)
  out_size <- if (is.null(layer)) 0 else outs$size[match(layer, outs$name)]
  input_floats <- 3 * arch_facts(net)$input_size^2
  per_image <- .Call(C_net_batch_bytes, net$ptr, 1L, training) +
    (input_floats + out_size) * 4 + (if (folder) 2 * input_floats * 4 else 0)
  b <- min(batch_size, n)
  if (b * per_image > limit) {
    fits <- max(1, floor(limit / per_image))
    abort(c("A batch of {b} images needs about {format_gb(b * per_image)} of memory, more than this machine has ({format_gb(phys)}).",
            i = "Use a smaller {.arg batch_size}: up to about {fits} image{?s} fit{?s/}."),
          call = call)
  }
  result <- n * out_size * 8
  if (!training && result > limit) {
    abort(c("The result, a {n} x {out_size} matrix of doubles, would take {format_gb(result)}, more than this machine has ({format_gb(phys)}).",
            i = "Extract fewer images per call, or a smaller layer (for example {.val convpool_5}, 9216 columns)."),
          call = call)
  }
  invisible()
}

# Parameters of a net of `classes` (of a variant): the fixed layers plus
# dense_3 (the engine's counts, read at load).
net_params_for <- function(classes, arch = "heuritech") {
  facts <- arch_facts(arch)
  facts$params_fixed + facts$params_per_class * classes
}

check_classes_memory <- function(classes, call = caller_env()) {
  if (classes > 1e6) {
    abort("{.arg classes} is {format(classes, big.mark = ',')}: the engine takes at most 1,000,000 classes.",
          call = call)
  }
  phys <- phys_memory()
  bytes <- net_params_for(classes) * 4
  if (!is.na(phys) && bytes > 0.8 * phys) {
    abort(c("A network of {format(classes, big.mark = ',')} classes has {format(net_params_for(classes), big.mark = ',')} parameters ({format_gb(bytes)}), more than this machine's memory ({format_gb(phys)}) can hold.",
            i = "Use fewer classes."),
          call = call)
  }
  invisible()
}

check_train_memory <- function(net, call = caller_env()) {
  phys <- phys_memory()
  bytes <- 3 * 4 * .Call(C_net_param_count, net$ptr)
  if (!is.na(phys) && bytes > 0.8 * phys) {
    abort(c("Training this network needs about {format_gb(bytes)} (parameters, gradients and momentum), more than this machine's memory ({format_gb(phys)}).",
            i = "Use a network of fewer classes."),
          call = call)
  }
  invisible()
}
