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

check_mean <- function(mean, arg = caller_arg(mean), call = caller_env()) {
  if (!is.numeric(mean) || !(length(mean) %in% c(1L, 3L)) || anyNA(mean) ||
      !all(is.finite(mean))) {
    abort(c("{.arg {arg}} must be 1 or 3 finite numbers (per-channel means, R, G, B).",
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
            i = "Networks live in compiled memory: create it again with {.fn alexnet}."),
          call = call)
  }
  invisible(net)
}

check_layer <- function(layer, arg = caller_arg(layer), call = caller_env()) {
  valid <- alexnet_layers()
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
