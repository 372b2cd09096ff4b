# JPEG files on disk: image_augment(), image_folder(), image_files(), and the batch
# sources that let alexnet_features(), predict() and alexnet_train() read
# them through the engine's threaded loader (src/r_images.c).

#' Random augmentation of training images
#'
#' The random transformations of Keras' `ImageDataGenerator` (Keras 1), drawn
#' anew for every image in every epoch of training. Give the result to
#' [image_folder()] or [image_files()]; it is used by [alexnet_train()] and
#' [alexnet_finetune()] only: [alexnet_features()], [predict.alexnet()] and
#' validation images are never augmented.
#'
#' With Keras' meaning of each option:
#' * `shear`: `shear_range`, the shear angle in **radians** (Keras 1), drawn
#'   uniformly from `(-shear, shear)`.
#' * `zoom`: `zoom_range`. A single number `z` means zoom factors drawn from
#'   `(1 - z, 1 + z)`, independently for the two axes; two numbers are the
#'   range itself. As in Keras, a factor above 1 samples a larger part of the
#'   image (zooms **out**), below 1 magnifies.
#' * `flip`: `horizontal_flip`, a left-right flip with probability 0.5.
#' * `rotation`: `rotation_range`, degrees, drawn from `(-rotation, rotation)`.
#' * `width_shift`, `height_shift`: fractions of the width and height, drawn
#'   from `(-shift, shift)`.
#'
#' Points that fall outside the image take the nearest edge pixel (Keras'
#' `fill_mode = "nearest"`). Unlike Keras, which samples with nearest
#' neighbour, the transform (combined with the resize) is sampled
#' **bilinearly**, once, and it turns about the true centre of the image.
#' The transform of image `i` in epoch `e` depends only on the seed, `e` and
#' `i`, so training is reproducible whatever the number of threads.
#'
#' @param shear Shear range in radians (>= 0).
#' @param zoom Zoom range: one number in `[0, 1)` or two numbers
#'   `c(lo, hi)` with `0 < lo <= hi`.
#' @param flip Random horizontal flips.
#' @param rotation Rotation range in degrees, in `[0, 180]`.
#' @param width_shift,height_shift Shift ranges as fractions of the image, in
#'   `[0, 1)`.
#' @return An object of class `"alexnet_augment"`.
#' @seealso [image_folder()]
#' @export
#' @examples
#' image_augment()                 # the seed's: shear 0.2, zoom 0.2, flips
#' image_augment(shear = 0, zoom = 0, flip = TRUE, rotation = 10)
image_augment <- function(shear = 0.2, zoom = 0.2, flip = TRUE, rotation = 0, width_shift = 0,
                          height_shift = 0) {
  check_number(shear, min = 0, max = pi / 2, open_max = TRUE)
  if (!is.numeric(zoom) || !length(zoom) %in% 1:2 || anyNA(zoom) || !all(is.finite(zoom))) {
    abort("{.arg zoom} must be one number in [0, 1) or two numbers {.code c(lo, hi)}.")
  }
  if (length(zoom) == 1L) {
    check_number(zoom, min = 0, max = 1, open_max = TRUE)
    zoom <- c(1 - zoom, 1 + zoom)
  } else if (zoom[1L] <= 0 || zoom[1L] > zoom[2L]) {
    abort("{.arg zoom} as {.code c(lo, hi)} needs {.code 0 < lo <= hi}, not c({zoom[1L]}, {zoom[2L]}).")
  }
  check_flag(flip)
  check_number(rotation, min = 0, max = 180)
  check_number(width_shift, min = 0, max = 1, open_max = TRUE)
  check_number(height_shift, min = 0, max = 1, open_max = TRUE)
  structure(list(shear = shear, zoom = as.double(zoom), flip = flip, rotation = rotation,
                 width_shift = width_shift, height_shift = height_shift),
            class = "alexnet_augment")
}

#' @export
print.alexnet_augment <- function(x, ...) {
  cat(sprintf("<image_augment> shear %g rad, zoom %g..%g, %s, rotation %g deg, shift %g x %g\n",
              x$shear, x$zoom[1L], x$zoom[2L], if (x$flip) "horizontal flips" else "no flips",
              x$rotation, x$width_shift, x$height_shift))
  invisible(x)
}

# c(rotation, width_shift, height_shift, shear, zoom_lo, zoom_hi, hflip, vflip) for C.
augment_vector <- function(a) {
  c(a$rotation, a$width_shift, a$height_shift, a$shear, a$zoom, as.numeric(a$flip), 0)
}

#' JPEG images in folders
#'
#' `image_folder()` describes a folder with one sub-folder per class, as
#' Keras' `flow_from_directory()` reads it: the sorted names of the
#' sub-folders are the classes (the levels of the labels), and every
#' `.jpg` or `.jpeg` file (any case: `.JPG` too) inside a class folder,
#' at any depth, is an image of that class. `image_files()` takes the files
#' (and labels) directly. Nothing is decoded here: the images are read, in
#' threads, while the network computes, wherever an [image_array()] is
#' accepted: [alexnet_features()], [predict.alexnet()], [alexnet_train()]
#' (`data` and `validation`) and [alexnet_finetune()].
#'
#' Every file is decoded by libjpeg to RGB (greyscale and CMYK files are
#' converted) and resized to the network's input (227 x 227; 224 x 224 for
#' the torchvision variant) exactly as an array of the same pixels is (see
#' [image_array()]): where the image is k >= 2 times larger than the input,
#' each k x k block of pixels is averaged
#' first, then the result is sampled bilinearly. So a photo gives the same
#' features from its file and from `jpeg::readJPEG(file) * 255`.
#'
#' @param path A folder with one sub-folder per class.
#' @param files A character vector of JPEG files.
#' @param labels `NULL`, or one label per file (a factor, or a vector turned
#'   into one with [factor()]).
#' @param size The side of the images given to the network: `NULL` (the
#'   default) for the input of the network they are given to, 227 x 227 (or
#'   224 x 224 for the torchvision variant, see [alexnet()]); a number must
#'   be that size.
#' @param resize `"stretch"`: the whole image to the input size (the aspect
#'   ratio is not kept, as Keras' `target_size` does); `"crop"`: the short
#'   side to 256, then the centre square of the input size (as torchvision's
#'   `Resize(256)` and `CenterCrop(224)`).
#' @param augment `NULL` or an [image_augment()]: random transformations applied
#'   when training only.
#' @param on_error What to do with a file that cannot be decoded (missing,
#'   empty, truncated, not a JPEG): `"stop"` raises an error naming the file;
#'   `"skip"` leaves it out of training and evaluation (with one warning at
#'   the end giving the number of such files and the first few names) and
#'   gives it a row of `NA` in [alexnet_features()] and [predict.alexnet()]
#'   (with a warning).
#' @param seed `NULL` or a whole number: the seed of the augmentation. With
#'   `NULL`, [alexnet_train()] draws one from its own `seed`.
#' @param fast_decode `FALSE` (default): every file is decoded at full size.
#'   `TRUE`: photos at least twice as large as needed are decoded at 1/2,
#'   1/4 or 1/8 of their size by libjpeg's DCT scaling, several times faster
#'   for large photos (a 4000 x 3000 photo: about 8x), with slightly
#'   different pixels from the array route.
#' @return An object of class `"image_folder"`: a list with `files` (full
#'   paths), `labels` (a factor, or `NULL` for `image_files()` without
#'   labels) and the options. It has `print()`, `length()` and `[` methods.
#' @seealso [image_augment()], [image_array()]
#' @export
#' @examples
#' \dontrun{
#' train <- image_folder("data/train", augment = image_augment(), seed = 1)
#' train
#' net <- alexnet(labels = levels(train$labels), seed = 1)
#' fit <- alexnet_train(net, train, epochs = 2, batch_size = 16)
#' }
image_folder <- function(path, size = NULL, resize = c("stretch", "crop"), augment = NULL,
                         on_error = c("stop", "skip"), seed = NULL, fast_decode = FALSE) {
  check_string(path)
  if (!dir.exists(path)) {
    what <- if (file.exists(path)) "is a file, not a folder" else "does not exist"
    abort("The image folder {.file {path}} {what}.")
  }
  classes <- sort(list.dirs(path, full.names = FALSE, recursive = FALSE))
  if (length(classes) == 0L) {
    abort(c("The image folder {.file {path}} has no class sub-folders.",
            i = "Put the images of each class in a sub-folder named after the class, e.g. {.file {file.path(path, 'cat')}}."))
  }
  files <- vector("list", length(classes))
  others <- character()
  for (k in seq_along(classes)) {
    found <- list.files(file.path(path, classes[k]), recursive = TRUE, full.names = TRUE)
    others <- c(others, grep("\\.(png|gif|bmp|webp|tiff?|heic|avif)$", found, ignore.case = TRUE, value = TRUE))
    f <- grep("\\.jpe?g$", found, ignore.case = TRUE, value = TRUE)
    if (length(f) == 0L) {
      abort(c("The class folder {.file {file.path(path, classes[k])}} has no JPEG files.",
              i = "Images must be {.file .jpg} or {.file .jpeg} files (any case)."))
    }
    files[[k]] <- sort(f)
  }
  if (length(others) > 0L) {
    cli::cli_warn(c("{length(others)} image file{?s} that {?is/are} not JPEG {?was/were} left out: {.file {utils::head(basename(others), 3)}}{if (length(others) > 3) ', ...' else ''}.",
                    i = "The package reads JPEG files only: convert the others (e.g. with ImageMagick's {.code mogrify -format jpg}) to use them."))
  }
  labels <- factor(rep(classes, lengths(files)), levels = classes)
  new_image_folder(unlist(files), labels, size, resize, augment, on_error, seed, fast_decode)
}

#' @rdname image_folder
#' @param ... Options for `image_files()`: `size`, `resize`, `augment`,
#'   `on_error`, `seed`, `fast_decode`, as for `image_folder()`.
#' @export
image_files <- function(files, labels = NULL, ...) {
  if (!is.character(files) || length(files) == 0L || anyNA(files)) {
    abort("{.arg files} must be a character vector of JPEG files, without NA.")
  }
  missing <- files[!file.exists(files) | dir.exists(files)]
  if (length(missing) > 0L) {
    abort(c("{length(missing)} of {.arg files} {?is/are} not {?a file/files}: {.file {utils::head(missing, 3)}}{if (length(missing) > 3) ', ...' else ''}."))
  }
  labels <- check_labels(labels, length(files))
  new_image_folder(files, labels, ...)
}

#' Read one JPEG file's pixels
#'
#' Decodes a JPEG file at full size exactly as [image_folder()] does before
#' resizing (libjpeg's defaults; greyscale and CMYK files become RGB).
#' `array(x, c(1, dim(x)))` makes it a one-image array for
#' [image_array()], [alexnet_features()] or [predict.alexnet()], which then
#' give what the file itself gives.
#'
#' @param file A JPEG file.
#' @param max_megapixels Larger images are refused before anything is
#'   decoded.
#' @return An integer array with `dim = c(height, width, 3)`, values 0..255.
#' @export
#' @examples
#' \dontrun{
#' px <- read_jpeg("dog.jpg")
#' alexnet_features(net, array(px, c(1, dim(px))))   # as alexnet_features(net, "dog.jpg")
#' }
read_jpeg <- function(file, max_megapixels = 100) {
  check_string(file)
  check_number(max_megapixels, min = 0, open_min = TRUE)
  engine(.Call(C_jpeg_read, enc2utf8(path.expand(file)), as.double(max_megapixels)))
}

new_image_folder <- function(files, labels, size = NULL, resize = c("stretch", "crop"),
                             augment = NULL, on_error = c("stop", "skip"), seed = NULL,
                             fast_decode = FALSE, call = caller_env()) {
  sizes <- vapply(.engine_facts$archs, function(a) a$input_size, 1L)
  if (!is.null(size)) {
    size <- check_count(size, call = call)
    if (!size %in% sizes) {
      abort(c("{.arg size} must be one of the networks' inputs ({.val {sort(unique(sizes))}}), not {size}.",
              i = "Or leave it {.code NULL}: the input of the network the images are given to."), call = call)
    }
  }
  resize <- rlang::arg_match(resize, c("stretch", "crop"), error_call = call)
  on_error <- rlang::arg_match(on_error, c("stop", "skip"), error_call = call)
  if (!is.null(augment) && !inherits(augment, "alexnet_augment")) {
    abort("{.arg augment} must be NULL or made by {.fn image_augment}, not {.obj_type_friendly {augment}}.",
          call = call)
  }
  if (!is.null(seed)) seed <- check_seed(seed, call = call)
  check_flag(fast_decode, call = call)
  files <- enc2utf8(normalizePath(files, mustWork = FALSE))
  structure(list(files = files, labels = labels, size = size, resize = resize,
                 augment = augment, on_error = on_error, seed = seed, fast_decode = fast_decode),
            class = "image_folder")
}

#' @export
print.image_folder <- function(x, ...) {
  n <- length(x$files)
  cat(sprintf("<image_folder> %d JPEG file%s, resize %s to %s%s, on error %s\n", n,
              if (n == 1L) "" else "s", x$resize,
              if (is.null(x$size)) "the network's input" else sprintf("%d x %d", x$size, x$size),
              if (isTRUE(x$fast_decode)) " (fast decode)" else "", x$on_error))
  if (is.null(x$labels)) {
    cat("no labels\n")
  } else {
    tab <- table(x$labels)
    cat(sprintf("classes: %s\n", paste(sprintf("%s (%d)", names(tab), as.integer(tab)),
                                       collapse = ", ")))
  }
  if (!is.null(x$augment)) print(x$augment)
  invisible(x)
}

#' @export
length.image_folder <- function(x) length(unclass(x)$files)

#' @export
`[.image_folder` <- function(x, i) {
  y <- unclass(x)
  y$files <- y$files[i]
  if (anyNA(y$files)) abort("Index out of range: the folder has {length(x)} file{?s}.")
  if (!is.null(y$labels)) y$labels <- y$labels[i]
  structure(y, class = "image_folder")
}

# ---------------------------------------------------------- batch sources --
# An image_array is used as before (the .Call entries of r_train.c); an
# image_folder gets a loader (threads decoding JPEGs) and a record of the
# files that failed. Callers free sources with close_sources() in on.exit().

n_images <- function(x) {
  if (inherits(x, "image_folder")) length(x) else dim(x$pixels)[1L]
}

# The engine's image source for `x`: an image_folder's JPEG files or an
# image_array's pixels, both a loader whose threads prepare each batch while
# the one before computes (engine/loader.c). It is made in `src`, which the
# caller has already handed to on.exit(close_sources(src)), so that an
# interrupt at any point joins its threads at once. `size`: the input side
# of the net the images are for.
batch_source <- function(x, size, training = FALSE, seed = NULL, src = new.env(parent = emptyenv()),
                         call = caller_env()) {
  src$failed <- character()
  if (!inherits(x, "image_folder")) {
    src$folder <- FALSE
    src$skip <- FALSE
    # training reads shuffled batches: the engine keeps the images as bytes
    suspendInterrupts(src$ptr <- engine(.Call(C_loader_create_array, x$pixels, training, as.integer(size))))
    return(src)
  }
  if (!is.null(x$size) && x$size != size) {
    abort(c("The image folder makes {x$size} x {x$size} images, but the network takes {size} x {size}.",
            i = "Leave {.arg size} of {.fn image_folder} {.code NULL}: the network's input."), call = call)
  }
  aug <- if (training && !is.null(x$augment)) augment_vector(x$augment)
  s <- if (!is.null(x$seed)) x$seed else if (!is.null(seed)) seed else 0
  src$folder <- TRUE
  src$files <- x$files
  src$skip <- identical(x$on_error, "skip")
  suspendInterrupts(src$ptr <- engine(.Call(C_loader_create, x$files, as.integer(size),
                                            if (x$resize == "crop") 1L else 0L, aug, as.double(s),
                                            isTRUE(x$fast_decode))))
  src
}

# The layers below the net's lowest learning one give the same output in
# every epoch unless the images are augmented: they are computed once here
# and the source then hands out their rows (engine: an_loader_freeze), which
# trains exactly as the images would. NULL where it does not apply (the
# net's start is below dense_1's input, or the images are augmented);
# otherwise the name of the layer whose output is kept, with attribute
# "on_disk": the bytes of it that a file in tempdir() holds (0: in memory).
# In memory they take at most getOption("alexnet.frozen_memory") bytes (by
# default half the memory free), beyond that a file that the system pages.
freeze_source <- function(src, net, x, batch_size, training, verbose = FALSE, call = caller_env()) {
  if (training && inherits(x, "image_folder") && !is.null(x$augment)) return(NULL)
  memory <- getOption("alexnet.frozen_memory", -1)
  if (!is.numeric(memory) || length(memory) != 1L || is.na(memory)) {
    abort("Option {.code alexnet.frozen_memory} must be a number of bytes (or unset), not {.obj_type_friendly {memory}}.",
          call = call)
  }
  res <- engine(.Call(C_loader_freeze, src$ptr, net$ptr, batch_size, training, src$skip, as.double(memory),
                      tempdir()), call = call)
  note_failures(src, res, call)
  if (!is.null(res$note) && verbose) {
    cli::cli_inform(c("The frozen layers are computed in every epoch: {res$note}."))
  }
  if (is.null(res$value)) return(NULL)
  images <- src$ptr
  src$ptr <- res$value
  .Call(C_loader_free, images)
  structure(res$stage, on_disk = res$on_disk)
}

# Joins the loaders' threads now. A Ctrl-C pending while this runs (as an
# on.exit handler) waits until every loader is freed: R would otherwise
# raise it inside the loop and leave the rest to the finalizers.
close_sources <- function(...) {
  suspendInterrupts(for (src in list(...)) {
    if (is.environment(src) && !is.null(src$ptr)) {
      .Call(C_loader_free, src$ptr)
      src$ptr <- NULL
    }
  })
}

# Record a batch's failures; stop on the first when the policy is "stop".
note_failures <- function(src, res, call) {
  f <- res$failed
  if (length(f$index) == 0L) return(invisible())
  if (!src$skip) {
    abort(c("Could not read the image {.file {src$files[f$index[1L]]}}.",
            x = "{f$message[1L]}",
            i = "Use {.code on_error = \"skip\"} in {.fn image_folder} to leave such files out."),
          call = call)
  }
  src$failed <- c(src$failed, src$files[f$index])
  invisible()
}

# One warning for the files skipped in training or evaluation.
report_skipped <- function(..., call = caller_env()) {
  failed <- unique(unlist(lapply(list(...), function(s) if (is.environment(s)) s$failed)))
  if (length(failed) == 0L) return(invisible())
  shown <- utils::head(failed, 3L)
  cli::cli_warn(c("Skipped {length(failed)} image file{?s} that could not be read.",
                  i = "{.file {shown}}{if (length(failed) > 3L) ', ...' else ''}"),
                call = call)
}

next_batch <- function(order, s, batch_size) {
  n <- length(order)
  if (s + batch_size > n) NULL else order[(s + batch_size):min(s + 2L * batch_size - 1L, n)]
}

# c(loss_sum, correct, images used) of one SGD step; `share`: NULL, or this
# rank's place in the global batch (R/distributed.R)
train_batch <- function(src, net, idx, labels, loss, sgd, epoch, next_idx, share = NULL,
                        call = caller_env()) {
  res <- engine(.Call(C_loader_train_batch, src$ptr, net$ptr, as.integer(idx), labels,
                      as.double(epoch), if (!is.null(next_idx)) as.integer(next_idx), loss, sgd,
                      src$skip, share), call = call)
  note_failures(src, res, call)
  res$value
}

# c(loss_sum, correct, images used) over all images, inference mode.
evaluate_source <- function(src, net, labels, loss, batch_size, call = caller_env()) {
  res <- engine(.Call(C_loader_evaluate, src$ptr, net$ptr, seq_along(labels), labels, loss,
                      as.integer(batch_size), src$skip), call = call)
  note_failures(src, res, call)
  res$value
}

# forward() over an image_array or image_folder: the n x size matrix, in
# image order; a folder's images that could not be read give NA rows.
# Pixels that as_source() left unscanned are checked from the range the
# engine saw while converting them (one pass over the array, not two).
source_forward <- function(net, x, until, batch_size, call = caller_env()) {
  src <- new.env(parent = emptyenv())
  on.exit(close_sources(src))
  batch_source(x, net_input_size(net), src = src, call = call)
  res <- engine(.Call(C_loader_forward, src$ptr, net$ptr, seq_len(n_images(x)), until,
                      as.integer(batch_size), src$skip), call = call)
  note_failures(src, res, call)
  if (!is.null(x$unscanned)) {   # the values, as the engine converted them
    check_pixel_values(x$pixels, .Call(C_loader_pixel_range, src$ptr), x$unscanned, call)
  }
  failed <- unique(src$failed)
  if (length(failed) > 0L) {
    cli::cli_warn(c("{length(failed)} image file{?s} could not be read: {?its row is/their rows are} NA.",
                    i = "{.file {utils::head(failed, 3L)}}{if (length(failed) > 3L) ', ...' else ''}"),
                  call = call)
  }
  res$value
}

# The net's input made by the loader for images `index` of an image_folder
# or image_array in `epoch` (with a folder's augmentation when `training`),
# as an image_array of its RGB images (size x size: the input of the net
# they are for), or the raw planar vector. For tests, checks and the
# Grad-CAM pictures.
source_pixels <- function(x, index = seq_len(n_images(x)), epoch = 0, training = FALSE,
                          seed = NULL, raw = FALSE, size = 227L) {
  src <- new.env(parent = emptyenv())
  on.exit(close_sources(src))
  batch_source(x, size, training = training, seed = seed, src = src)
  res <- engine(.Call(C_loader_pixels, src$ptr, as.integer(index), as.double(epoch)))
  if (raw) return(res$value)
  s <- size
  a <- array(res$value, c(s, s, 3L, length(index)))   # x, y, channel, image
  px <- aperm(a, c(4L, 2L, 1L, 3L))
  image_array(px, labels = if (!is.null(x$labels)) x$labels[index])
}
