# Weights in HDF5 files: save, load (by Keras layer name), describe. The
# work is done by the engine (src/engine/weights.c) through src/r_weights.c.

.weight_layers <- NULL   # the Keras layer names, from the engine at load (R/alexnet-package.R)

#' Save and load the weights of a network
#'
#' `save_weights()` writes the parameters of `net` to an HDF5 file, in the
#' package's format or as a Keras 1 file; `load_weights()` reads such a file,
#' a Keras 1 `save_weights()` file such as the Heuritech
#' `alexnet_weights.h5`, Caffe's `bvlc_alexnet.caffemodel` or torchvision's
#' `alexnet-owt-7be5be79.pth` into `net`, which is changed in place. The
#' format is found from the file's first bytes, not its name.
#'
#' @section The package's files:
#' The files are self-describing HDF5: the root group holds the attributes
#' `format` (`"alexnet"`), `format_version` (1), `classes`, `class_names`
#' (the `labels` of the network), `mean` (the input means, red, green,
#' blue), `layers` (the layer names in order) and `layout` (a sentence
#' describing the layout). Each layer with weights (`conv_1`, `conv_2_1`,
#' `conv_2_2`, `conv_3`, `conv_4_1`, `conv_4_2`, `conv_5_1`, `conv_5_2`,
#' `dense_1`, `dense_2`, `dense_3`, the Heuritech names) is a group with the
#' float32 datasets `weight` and `bias`, in PyTorch's layout: convolution
#' kernels `(out, in / groups, height, width)` applied as cross-correlation,
#' the grouped convolutions as their two halves; dense weights `(out, in)`.
#' Other tools (for example h5py) can read them by layer name.
#'
#' The file also keeps the input `scale` of [alexnet()] (one per channel) and
#' the variant (`arch`); loading one of the package's own files sets the
#' network's mean and scale from it. Loading a Keras 1 file sets the scale
#' to 1, the convention such files were trained with (`pixel - mean`).
#'
#' Saving writes a temporary file next to `file` and renames it to `file`
#' only when it is complete, so a failed save leaves any earlier `file` as it
#' was. A file of 1000 classes takes about 244 MB, one of 2 classes 228 MB.
#'
#' @section Keras 1 files:
#' With `format = "keras1"` the file is laid out as a Keras 1 (Theano)
#' `save_weights()` file, as the Heuritech `alexnet_weights.h5` is: the root
#' attributes `layer_names` (all 34 layers of the Heuritech model, weightless
#' ones included) and `backend` (`"theano"`); one group per layer with the
#' attribute `weight_names` (`<layer>_W`, `<layer>_b`, empty for layers
#' without weights) and the float32 datasets `<layer>_W` and `<layer>_b`:
#' convolution kernels `(out, in / groups, height, width)` flipped in both
#' spatial axes (Theano convolves), dense kernels `(in, out)`. Such a file
#' loads back into a network with the same parameters, bit for bit, and
#' into the Heuritech `convnets-keras` model. It holds neither the class
#' names, nor the input mean, nor the scale: a network made from it has
#' the ImageNet mean and scale 1 (the Heuritech convention) unless told
#' otherwise.
#'
#' @section Caffe and torchvision files:
#' Caffe's binary `NetParameter` (`bvlc_alexnet.caffemodel`, in the newer
#' `layer` or the older `layers` form) is read with protobuf-c: `conv1` ..
#' `conv5`, `fc6` .. `fc8` become `conv_1` .. `dense_3` of the `"caffe"`
#' variant; `conv1`'s filters, which see BGR, are turned to RGB. The input
#' convention becomes Caffe's: its mean image averaged per channel, scale 1.
#' torchvision's `torch.save` archive of a state dict (`alexnet-owt-*.pth`;
#' the pre-1.6 format is refused with how to re-save it) is read with libzip
#' and a pickle reader that runs nothing the file says: `features.0` ..
#' `features.10`, `classifier.1` .. `classifier.6` (also with a `module.`
#' prefix) become the `"torchvision"` variant's layers, with torchvision's
#' mean and standard deviations. A file of one variant does not load into a
#' network of another: create the network from the file with
#' `alexnet(weights = file)`.
#'
#' @section Loading:
#' Every format is read by layer name. Keras 1
#' (Theano) convolution kernels are flipped into cross-correlation kernels and
#' dense kernels transposed. Loading is all or nothing: the whole file is read
#' and checked before `net` changes, so on any error (a missing file, a file
#' that is not HDF5, a truncated or damaged file, a file without AlexNet's
#' layers, a layer of the wrong shape with `by_name = FALSE`) `net` is
#' unchanged and the error names the file and, where one is at fault, the
#' layer. An interrupt (Ctrl-C) during loading also leaves `net` as it was:
#' the read is one compiled call, and the parameters copied before it are put
#' back when an interrupt arrived meanwhile (loading briefly needs memory for
#' that copy, the size of the parameters).
#'
#' HDF5 files (the package's, Keras 1) are read in a short-lived child
#' process: the HDF5 library (1.10) crashes or hangs inside its own code on
#' some damaged or hostile files, and that now ends the child, not the R
#' session. Such a file is an error ("... is damaged: the HDF5 library
#' crashed reading it (signal 11, SIGSEGV); nothing was loaded"), as is a
#' read that makes no progress for `getOption("alexnet.hdf5_timeout")`
#' seconds (60 when unset; raise it for a very slow disk). The same holds
#' for [weights_info()] and `alexnet(weights = )`.
#'
#' With `by_name = TRUE` (the default), a layer of another shape in the file
#' (for example the 1000-class `dense_3` of the Heuritech weights loaded into
#' a 2-class network) or missing from it keeps the network's own weights, and
#' the report says so; at least one layer must load. With `by_name = FALSE`
#' every layer must be in the file with the network's shapes.
#'
#' A file of the package also sets the network's input means. Its class names
#' become the `labels` of the returned network when its `dense_3` was loaded:
#' use `net <- load_weights(net, file)` to keep them.
#'
#' @param net A network made by [alexnet()].
#' @param file Path of the HDF5 file.
#' @param format For `save_weights()`: `"alexnet"` (the package's own format,
#'   the default) or `"keras1"` (a Keras 1 file, see below).
#' @param by_name Keep the network's own weights for layers that the file
#'   lacks or has with another shape (`TRUE`), or require every layer with
#'   the network's shapes (`FALSE`).
#' @param verbose Print which layers were loaded and which kept (for
#'   `save_weights()`: a line naming the file). Defaults to [interactive()].
#' @return `save_weights()`: `file`, invisibly. `load_weights()`: `net`,
#'   invisibly, with the attribute `"weights_report"`: a data frame with one
#'   row per layer with weights: `layer`, `status` (`"loaded"`, `"kept"`:
#'   in the file with another shape, or `"missing"`: not in the file) and
#'   `file_shape` (the file's shapes of kept layers, else `NA`), and the
#'   attributes `file`, `kind` (`"alexnet"`, `"keras1"`, `"caffe"` or
#'   `"torch"`) and `mean_loaded`.
#' @seealso [weights_info()] to describe a file; the `weights` argument of
#'   [alexnet()] to create a network from one.
#' @export
#' @examples
#' \donttest{
#' net <- alexnet(classes = 2, seed = 1, labels = c("cat", "dog"))
#' file <- tempfile(fileext = ".h5")
#' save_weights(net, file)
#' weights_info(file)
#' other <- alexnet(classes = 2, seed = 2)
#' other <- load_weights(other, file, verbose = TRUE)
#' other$labels
#' # a network of other classes keeps its own dense_3
#' net3 <- alexnet(classes = 3, weights = file)
#' attr(net3, "weights_report")
#' # the same weights as a Keras 1 file, the layout of the Heuritech weights
#' keras <- tempfile(fileext = ".h5")
#' save_weights(net, keras, format = "keras1")
#' weights_info(keras)
#' unlink(c(file, keras))
#' }
save_weights <- function(net, file, format = c("alexnet", "keras1"), verbose = interactive()) {
  call <- environment()
  check_net(net)
  check_string(file)
  format <- check_weights_format(format)
  check_flag(verbose)
  path <- path.expand(file)
  dir <- dirname(path)
  if (!dir.exists(dir)) {
    abort(c("Cannot save weights to {.file {file}}.",
            x = "The directory {.file {dir}} does not exist."))
  }
  tryCatch(
    .Call(C_weights_save, net$ptr, enc2native(path), as.character(net$labels), format),
    error = function(e) {
      msg <- conditionMessage(e)
      abort(c("Saving the weights failed.", x = "{msg}"), call = call)
    }
  )
  if (verbose) {
    cli::cli_inform(c(
      v = "Saved the weights ({net$classes} class{?es}) to {.file {file}} ({if (format == 'keras1') 'a Keras 1 file, ' else ''}{format_bytes(file.size(path))})."
    ))
  }
  invisible(file)
}

#' @rdname save_weights
#' @export
load_weights <- function(net, file, by_name = TRUE, verbose = interactive()) {
  check_net(net)
  res <- load_weights_into(net, file, by_name, verbose)
  # the file's class names, where its dense_3 was loaded and it has them
  if (attr(res$report, "kind") == "alexnet" && res$report$status[res$report$layer == "dense_3"] == "loaded") {
    info <- tryCatch(weights_file_info(file), error = function(e) NULL)
    if (!is.null(info$class_names) && length(info$class_names) == net$classes) {
      net$labels <- info$class_names
    }
  }
  attr(net, "weights_report") <- res$report
  invisible(net)
}

# The work of load_weights(), without changing net$labels: returns
# list(report).
#
# An interrupt (Ctrl-C) during the read leaves `net` as it was: with `undo`
# (a net someone holds), the glue copies the parameters first and puts them
# back when an interrupt arrived during the read, then the interrupt is
# raised here. `undo = FALSE` (a net alexnet() has just made) skips the copy.
load_weights_into <- function(net, file, by_name, verbose, undo = TRUE, call = caller_env()) {
  check_string(file, call = call)
  check_flag(by_name, call = call)
  check_flag(verbose, call = call)
  path <- enc2native(path.expand(file))
  res <- tryCatch(
    .Call(C_weights_load, net$ptr, path, by_name, isTRUE(undo)),
    error = function(e) {
      msg <- conditionMessage(e)
      abort(c("Loading the weights failed; {.arg net} is unchanged.", x = "{msg}"), call = call)
    }
  )
  if (isTRUE(res$interrupted)) {
    rlang::interrupt()
  }
  report <- data.frame(layer = res$layer, status = res$status, file_shape = res$file_shape,
                       stringsAsFactors = FALSE)
  attr(report, "file") <- file
  attr(report, "kind") <- res$kind
  attr(report, "mean_loaded") <- res$mean_loaded
  if (verbose) {
    inform_loaded(net, report, file, mean = if (res$mean_loaded) .Call(C_net_get_mean, net$ptr))
  }
  list(report = report)
}

inform_loaded <- function(net, report, file, mean = NULL) {
  kind <- attr(report, "kind")
  what <- switch(kind, keras1 = "a Keras 1 file", caffe = "a Caffe model", torch = "a torchvision state dict",
                 "an alexnet file")
  loaded <- report$layer[report$status == "loaded"]
  lines <- if (length(loaded) == nrow(report)) {
    c(v = "Loaded all {nrow(report)} layers from {.file {file}} ({what}).")
  } else {
    others <- report$layer[report$status != "loaded"]
    c(v = "Loaded {length(loaded)} of {nrow(report)} layers from {.file {file}} ({what}): all but {.val {others}}.")
  }
  shapes <- layer_shapes(net, kind)
  for (i in which(report$status == "kept")) {
    layer <- report$layer[i]
    lines <- c(lines, i = sprintf("Kept the net's own %s %s: the file's is %s.",
                                  layer, shapes[[layer]], report$file_shape[i]))
  }
  missing <- report$layer[report$status == "missing"]
  if (length(missing) > 0L) {
    lines <- c(lines, i = "Not in the file, kept the net's own: {.val {missing}}.")
  }
  if (!is.null(mean)) {
    lines <- c(lines, i = "Input mean set from the file: {format_mean(mean)}.")
  }
  if (kind == "keras1") {
    lines <- c(lines, i = "Input scale set to 1: Keras 1 AlexNets take {.code pixel - mean}.")
  }
  if (kind == "caffe") {
    lines <- c(lines, i = "conv_1's filters turned from Caffe's BGR to RGB; input scale 1.")
  }
  if (kind == "torch") {
    lines <- c(lines, i = "Input scale set to torchvision's: 1 / (255 x its standard deviations).")
  }
  cli::cli_inform(lines)
}

# The net's shapes of each layer with weights, as a file of `kind` holds
# them: "W (out, in, kh, kw), b (out,)" (the engine's notation); dense W is (out, in) in the
# package's files, (in, out) in Keras 1 files.
layer_shapes <- function(net, kind) {
  lay <- .Call(C_net_layers, net$ptr)
  shapes <- character()
  for (layer in .weight_layers) {
    base <- sub("_[12]$", "", layer)
    j <- match(base, lay$name)
    if (is.na(j)) {
      shapes[[layer]] <- ""
      next
    }
    parts <- if (base != layer) 2L else 1L
    out <- lay$out[j] %/% parts
    w <- if (lay$kind[j] == "conv") {
      c(out, lay$`in`[j] %/% lay$groups[j], lay$kh[j], lay$kw[j])
    } else if (kind == "keras1") {
      c(lay$`in`[j], out)
    } else {
      c(out, lay$`in`[j])
    }
    shapes[[layer]] <- sprintf("W (%s), b (%d,)", paste(w, collapse = ", "), out)
  }
  shapes
}

format_mean <- function(mean) {
  paste(vapply(signif(mean, 7), format, ""), collapse = ", ")
}

format_bytes <- function(n) {
  if (is.na(n)) return("size unknown")
  if (n >= 1e6) sprintf("%.0f MB", n / 1e6) else sprintf("%.0f kB", n / 1e3)
}

check_weights_format <- function(format, call = caller_env()) {
  formats <- c("alexnet", "keras1")
  if (identical(format, formats)) return("alexnet")
  if (!is.character(format) || length(format) != 1L || is.na(format) || !format %in% formats) {
    abort(c("{.arg format} must be {.or {.val {formats}}}.",
            x = if (is.character(format) && length(format) == 1L) "It is {.val {format}}." else
              "It is {.obj_type_friendly {format}} of length {length(format)}."),
          call = call)
  }
  format
}

#' Describe a weights file
#'
#' Reads the description of a weights file (the package's own, see
#' [save_weights()], or a Keras 1 file such as the Heuritech
#' `alexnet_weights.h5`) without loading its weights.
#'
#' @param file Path of the HDF5 file.
#' @return An object of class `"alexnet_weights_info"`: a list with `file`,
#'   `kind` (`"alexnet"`, `"keras1"`, `"caffe"` or `"torch"`), `arch` (the
#'   variant of [alexnet()] its weights belong to), `format_version` (0 for
#'   other files than the package's), `classes` (the outputs of its
#'   `dense_3`; `NA` when it has none),
#'   `class_names` (`NULL` when the file has none, as Keras files), `mean`
#'   (the file's input means, or the ImageNet means for Keras files),
#'   `has_mean`, `layers` (the layers with weights it holds), `backend`
#'   (Keras files: the Keras backend it names, `""` when none) and
#'   `input_scale` (the file's input scale per channel; 1 for Keras and
#'   Caffe files).
#' @seealso [save_weights()], [load_weights()]
#' @export
weights_info <- function(file) {
  check_string(file)
  weights_file_info(file)
}

weights_file_info <- function(file, call = caller_env()) {
  path <- enc2native(path.expand(file))
  info <- tryCatch(
    .Call(C_weights_info, path),
    error = function(e) {
      msg <- conditionMessage(e)
      abort(c("Cannot read the weights file.", x = "{msg}"), call = call)
    }
  )
  if (info$classes == 0L) info$classes <- NA_integer_
  structure(c(list(file = file), info), class = "alexnet_weights_info")
}

#' @export
print.alexnet_weights_info <- function(x, ...) {
  kind <- switch(x$kind, alexnet = sprintf("alexnet file, format version %d", x$format_version),
                 keras1 = paste0("Keras 1 file", if (nzchar(x$backend)) sprintf(" (backend %s)", x$backend)),
                 caffe = "Caffe model (protobuf NetParameter)", torch = "PyTorch state dict (torch.save)",
                 x$kind)
  cat(sprintf("<alexnet_weights_info> %s\n", x$file))
  cat(sprintf("kind: %s\n", kind))
  cat(sprintf("variant: %s\n", x$arch))
  names <- x$class_names
  shown <- if (is.null(names) && isTRUE(x$classes == 1000) && x$kind %in% c("keras1", "caffe", "torch")) {
    "ImageNet's, named by imagenet_classes()"
  } else if (is.null(names)) {
    "no class names"
  } else if (length(names) > 6L) {
    paste0(paste(utils::head(names, 5L), collapse = ", "), ", ..., ", names[length(names)])
  } else {
    paste(names, collapse = ", ")
  }
  cat(sprintf("classes: %s (%s)\n", if (is.na(x$classes)) "unknown (no dense_3)" else x$classes, shown))
  cat(sprintf("mean: %s%s\n", format_mean(x$mean),
              if (x$has_mean) "" else " (not in the file: ImageNet's)"))
  scale <- signif(x$input_scale, 6)
  cat(sprintf("input: (pixel - mean) * %s\n", if (all(scale == scale[1L])) format(scale[1L])
                                              else sprintf("(%s)", paste(format(scale), collapse = ", "))))
  cat(sprintf("layers: %s\n", paste(x$layers, collapse = ", ")))
  invisible(x)
}

#' The 1000 ImageNet classes
#'
#' The names of the ILSVRC-2012 classes in the order of the outputs of every
#' ImageNet AlexNet: Heuritech's Keras file, Caffe's `bvlc_alexnet` and
#' torchvision's `alexnet` (the WordNet synsets sorted by id). [alexnet()]
#' gives them as labels to a 1000-class network loaded from such a file, so
#' that `predict(net, x, type = "class")` names the class. The names are
#' torchvision's (`tools/make_imagenet_classes.py` in the package's source).
#'
#' @return A character vector of 1000 unique names.
#' @export
#' @examples
#' head(imagenet_classes())
#' imagenet_classes()[282]
imagenet_classes <- function() {
  readLines(system.file("extdata", "imagenet_classes.txt", package = "alexnet"), encoding = "UTF-8")
}
