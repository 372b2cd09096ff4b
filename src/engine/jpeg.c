/* jpeg.c: JPEG files to RGB bytes with libjpeg (version-62 API or later).
 *
 * Errors never leave through libjpeg's error_exit (which calls exit()): a
 * setjmp/longjmp manager takes its place, output_message keeps the text
 * instead of printing it, and emit_message turns data-corruption warnings
 * (a premature end of file above all) into errors unless `lenient`.
 * The file is read into memory first (one read, a clear message for a
 * missing, unreadable or empty file, and a look at its first bytes to name
 * PNG, GIF, ... files that only carry a .jpg name).
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <jpeglib.h>
#include <jerror.h>
#ifdef _WIN32
#include <windows.h>
#else
#include <unistd.h>
#endif

#include "files.h"
#include "images.h"

#define DEFAULT_MAX_MEGAPIXELS 100.0
#define MAX_FILE_BYTES ((size_t)1 << 30)   /* a 1 GiB JPEG is not a photo */

/* ---- files ----------------------------------------------------------------- */

static an_status io_fail(const char *path, const char *what, int e)
{
    const char *t = an_errno_text(e);
    if (t) return an_fail(AN_ERR_IO, "'%s': %s: %s", path, what, t);
    return an_fail(AN_ERR_IO, "'%s': %s (errno %d)", path, what, e);
}

/* Paths are UTF-8; on Windows they go through the wide-character API so
 * that non-ASCII names open whatever the code page. Only a regular file
 * is opened (a FIFO or a device named .jpg would block, or never end: it
 * is opened without blocking and refused), and one larger than any photo
 * is refused before a byte is read. */
static an_status open_read(const char *path, FILE **out)
{
    *out = NULL;
    errno = 0;
#ifndef _WIN32
    int fd;
    long long bytes;
    an_status opened = an_open_regular(path, "image", &fd, &bytes);
    if (opened != AN_OK) return opened;
    if ((unsigned long long)bytes > MAX_FILE_BYTES) {
        close(fd);
        return an_fail(AN_ERR_FORMAT, "'%s': %.1f GB, larger than 1 GiB: not a photo (refused before reading)",
                       path, bytes / 1e9);
    }
    *out = fdopen(fd, "rb");
    if (!*out) {
        int e = errno;
        close(fd);
        return io_fail(path, "cannot open", e);
    }
    return AN_OK;
#else
    int n = MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, path, -1, NULL, 0);
    if (n > 0) {
        wchar_t *w = malloc((size_t)n * sizeof *w);
        if (w) {
            MultiByteToWideChar(CP_UTF8, 0, path, -1, w, n);
            *out = _wfopen(w, L"rb");
            free(w);
        }
    }
    if (!*out) *out = fopen(path, "rb");
    return *out ? AN_OK : io_fail(path, "cannot open", errno);
#endif
}

static int grow(void **buf, size_t *cap, size_t need)
{
    if (*cap >= need) return 1;
    size_t n = *cap ? *cap : 4096;
    while (n < need) n = n > ((size_t)-1) / 2 ? need : n * 2;
    void *p = realloc(*buf, n);
    if (!p) return 0;
    *buf = p;
    *cap = n;
    return 1;
}

static an_status read_file(an_image_scratch *s, const char *path, size_t *size)
{
    *size = 0;
    if (!path || !path[0]) return an_fail(AN_ERR_ARGUMENT, "empty file name");
    FILE *f;
    an_status opened = open_read(path, &f);
    if (opened != AN_OK) return opened;
    size_t n = 0;
    for (;;) {
        if (!grow((void **)&s->file, &s->file_cap, n + 65536)) {
            fclose(f);
            return an_fail(AN_ERR_MEMORY, "'%s': out of memory reading %zu bytes", path, n + 65536);
        }
        size_t want = s->file_cap - n;
        errno = 0;
        size_t got = fread(s->file + n, 1, want, f);
        n += got;
        if (got < want) {
            if (ferror(f)) {
                int e = errno;
                fclose(f);
                return io_fail(path, "read error", e);
            }
            break;
        }
        if (n > MAX_FILE_BYTES) {
            fclose(f);
            return an_fail(AN_ERR_FORMAT, "'%s': larger than 1 GiB: not a photo", path);
        }
    }
    fclose(f);
    *size = n;
    return AN_OK;
}

/* A clear message for what is not a JPEG at all. */
static an_status check_signature(const char *path, const uint8_t *b, size_t n)
{
    if (n == 0) return an_fail(AN_ERR_FORMAT, "'%s': empty file (0 bytes)", path);
    if (n >= 2 && b[0] == 0xFF && b[1] == 0xD8) {
        if (n < 4) return an_fail(AN_ERR_FORMAT, "'%s': truncated JPEG file (%zu bytes)", path, n);
        return AN_OK;
    }
    const char *kind = NULL;
    if (n >= 8 && !memcmp(b, "\x89PNG\r\n\x1a\n", 8)) kind = "a PNG image";
    else if (n >= 6 && (!memcmp(b, "GIF87a", 6) || !memcmp(b, "GIF89a", 6))) kind = "a GIF image";
    else if (n >= 2 && b[0] == 'B' && b[1] == 'M') kind = "a BMP image";
    else if (n >= 12 && !memcmp(b, "RIFF", 4) && !memcmp(b + 8, "WEBP", 4)) kind = "a WebP image";
    else if (n >= 4 && (!memcmp(b, "II*\0", 4) || !memcmp(b, "MM\0*", 4))) kind = "a TIFF image";
    else if (n >= 12 && !memcmp(b + 4, "ftyp", 4)) kind = "an HEIF/AVIF/MP4 file";
    else if (n >= 5 && !memcmp(b, "<!DOC", 5)) kind = "an HTML page";
    else if (n >= 5 && !memcmp(b, "<html", 5)) kind = "an HTML page";
    if (kind) return an_fail(AN_ERR_FORMAT, "'%s': not a JPEG file: it is %s", path, kind);
    unsigned char h[4] = {0, 0, 0, 0};
    memcpy(h, b, n < 4 ? n : 4);
    return an_fail(AN_ERR_FORMAT,
                   "'%s': not a JPEG file (starts with bytes %02X %02X %02X %02X, JPEG starts FF D8)",
                   path, h[0], h[1], h[2], h[3]);
}

/* ---- libjpeg's error manager and memory source ---------------------------------- */

typedef struct {
    struct jpeg_error_mgr pub;
    jmp_buf jump;
    int lenient;
    int memory;             /* the error was an allocation failure */
    int truncated;          /* premature end of file */
    char message[JMSG_LENGTH_MAX];  /* the error, or the warning that became one */
    char warning[JMSG_LENGTH_MAX];  /* the first warning kept (lenient) */
} jerr_mgr;

static void jerr_exit(j_common_ptr c)
{
    jerr_mgr *e = (jerr_mgr *)c->err;
    c->err->format_message(c, e->message);
    e->memory = c->err->msg_code == JERR_OUT_OF_MEMORY;
    longjmp(e->jump, 1);
}

/* Never print: keep the text. */
static void jerr_output(j_common_ptr c)
{
    jerr_mgr *e = (jerr_mgr *)c->err;
    c->err->format_message(c, e->message);
}

static int warning_is_corruption(int code)
{
    switch (code) {
    case JWRN_JPEG_EOF:
    case JWRN_HIT_MARKER:
    case JWRN_HUFF_BAD_CODE:
    case JWRN_MUST_RESYNC:
    case JWRN_NOT_SEQUENTIAL:
    case JWRN_BOGUS_PROGRESSION:
#if JPEG_LIB_VERSION >= 70 || defined(LIBJPEG_TURBO_VERSION)
    case JWRN_ARITH_BAD_CODE:
#endif
        return 1;
    default:
        return 0;   /* extraneous bytes, unknown JFIF revision, Adobe code, ICC, ... */
    }
}

static void jerr_emit(j_common_ptr c, int level)
{
    if (level >= 0) return;   /* trace messages */
    jerr_mgr *e = (jerr_mgr *)c->err;
    int code = c->err->msg_code;
    c->err->num_warnings++;
    if (warning_is_corruption(code) && !e->lenient) {
        c->err->format_message(c, e->message);
        e->truncated = code == JWRN_JPEG_EOF;
        longjmp(e->jump, 1);
    }
    if (!e->warning[0] && warning_is_corruption(code))
        c->err->format_message(c, e->warning);
}

/* A memory source (jpeg_mem_src is missing from some libjpeg builds). */
static const JOCTET fake_eoi[2] = {0xFF, JPEG_EOI};

static void src_init(j_decompress_ptr cinfo) { (void)cinfo; }

static boolean src_fill(j_decompress_ptr cinfo)
{
    /* All the data was given at once: running out means a truncated file. */
    WARNMS(cinfo, JWRN_JPEG_EOF);
    cinfo->src->next_input_byte = fake_eoi;
    cinfo->src->bytes_in_buffer = 2;
    return TRUE;
}

static void src_skip(j_decompress_ptr cinfo, long n)
{
    struct jpeg_source_mgr *src = cinfo->src;
    if (n <= 0) return;
    if (n > (long)src->bytes_in_buffer) {
        src_fill(cinfo);   /* skipping past the end: truncated */
        return;
    }
    src->next_input_byte += n;
    src->bytes_in_buffer -= (size_t)n;
}

static void src_term(j_decompress_ptr cinfo) { (void)cinfo; }

static void set_source(j_decompress_ptr cinfo, struct jpeg_source_mgr *src, const uint8_t *data,
                       size_t n)
{
    src->init_source = src_init;
    src->fill_input_buffer = src_fill;
    src->skip_input_data = src_skip;
    src->resync_to_restart = jpeg_resync_to_restart;
    src->term_source = src_term;
    src->next_input_byte = data;
    src->bytes_in_buffer = n;
    cinfo->src = src;
}

static void init_errors(struct jpeg_decompress_struct *cinfo, jerr_mgr *e, int lenient)
{
    memset(e, 0, sizeof *e);
    cinfo->err = jpeg_std_error(&e->pub);
    e->pub.error_exit = jerr_exit;
    e->pub.output_message = jerr_output;
    e->pub.emit_message = jerr_emit;
    e->lenient = lenient;
}

static an_status jpeg_failure(const char *path, const jerr_mgr *e)
{
    if (e->memory) return an_fail(AN_ERR_MEMORY, "'%s': out of memory decoding the JPEG", path);
    if (e->truncated) return an_fail(AN_ERR_FORMAT, "'%s': truncated JPEG file (%s)", path, e->message);
    return an_fail(AN_ERR_FORMAT, "'%s': corrupt or unsupported JPEG (%s)", path, e->message);
}

static const char *space_name(J_COLOR_SPACE s)
{
    switch (s) {
    case JCS_GRAYSCALE: return "grey";
    case JCS_YCbCr: return "YCbCr";
    case JCS_RGB: return "RGB";
    case JCS_CMYK: return "CMYK";
    case JCS_YCCK: return "YCCK";
    default: return "unknown";
    }
}

static an_status check_header(const char *path, const struct jpeg_decompress_struct *c,
                              double max_megapixels)
{
    if (max_megapixels <= 0) max_megapixels = DEFAULT_MAX_MEGAPIXELS;
    double mp = (double)c->image_width * c->image_height / 1e6;
    if (c->image_width < 1 || c->image_height < 1)
        return an_fail(AN_ERR_FORMAT, "'%s': JPEG declares an empty image (%u x %u)", path,
                       c->image_width, c->image_height);
    if (mp > max_megapixels)
        return an_fail(AN_ERR_MEMORY,
                       "'%s': JPEG declares %u x %u pixels (%.1f megapixels), more than the limit of "
                       "%g megapixels: refused before decoding",
                       path, c->image_width, c->image_height, mp, max_megapixels);
    switch (c->jpeg_color_space) {
    case JCS_GRAYSCALE: case JCS_YCbCr: case JCS_RGB: case JCS_CMYK: case JCS_YCCK:
        return AN_OK;
    default:
        return an_fail(AN_ERR_FORMAT, "'%s': unsupported JPEG colour space (%d components)", path,
                       c->num_components);
    }
}

/* ---- public --------------------------------------------------------------- */

an_status an_jpeg_read_info(const char *path, an_jpeg_info *info)
{
    if (!info) return an_fail(AN_ERR_ARGUMENT, "an_jpeg_read_info: info is NULL");
    memset(info, 0, sizeof *info);
    info->color_space = "unknown";
    if (!path || !path[0]) return an_fail(AN_ERR_ARGUMENT, "empty file name");
    FILE *f;
    an_status opened = open_read(path, &f);
    if (opened != AN_OK) return opened;
    uint8_t head[16];
    size_t n = fread(head, 1, sizeof head, f);
    if (ferror(f)) {
        int e = errno;
        fclose(f);
        return io_fail(path, "read error", e);
    }
    an_status st = check_signature(path, head, n);
    if (st != AN_OK || fseek(f, 0, SEEK_SET) != 0) {
        fclose(f);
        return st != AN_OK ? st : io_fail(path, "cannot seek", errno);
    }
    struct jpeg_decompress_struct cinfo;
    jerr_mgr jerr;
    cinfo.mem = NULL;
    init_errors(&cinfo, &jerr, 0);
    if (setjmp(jerr.jump)) {
        jpeg_destroy_decompress(&cinfo);
        fclose(f);
        return jpeg_failure(path, &jerr);
    }
    jpeg_create_decompress(&cinfo);
    jpeg_stdio_src(&cinfo, f);
    jpeg_read_header(&cinfo, TRUE);
    info->width = (int)cinfo.image_width;
    info->height = (int)cinfo.image_height;
    info->components = cinfo.num_components;
    info->progressive = jpeg_has_multiple_scans(&cinfo) ? 1 : 0;
    info->adobe = cinfo.saw_Adobe_marker ? 1 : 0;
    info->color_space = space_name(cinfo.jpeg_color_space);
    jpeg_destroy_decompress(&cinfo);
    fclose(f);
    return AN_OK;
}

/* PIL's CMYK -> RGB (Convert.c cmyk2rgb): R = (255 - K) - C (255 - K) / 255,
 * rounded as its MULDIV255. Adobe files store the inverted values. */
static inline uint8_t cmyk_channel(unsigned c, unsigned nk)
{
    unsigned t = c * nk + 128;
    return (uint8_t)(nk - ((t + (t >> 8)) >> 8));
}

static void cmyk_to_rgb(const uint8_t *in, uint8_t *out, int w, int inverted)
{
    for (int x = 0; x < w; x++, in += 4, out += 3) {
        unsigned c = in[0], m = in[1], y = in[2], k = in[3];
        if (inverted) { c = 255 - c; m = 255 - m; y = 255 - y; k = 255 - k; }
        unsigned nk = 255 - k;
        out[0] = cmyk_channel(c, nk);
        out[1] = cmyk_channel(m, nk);
        out[2] = cmyk_channel(y, nk);
    }
}

/* The decoder proper, from the n bytes at `data` (the file's, or the
 * caller's): into s->rgb (or, with `own`, a fresh malloc'd block). `path`
 * only names the image in messages. */
static an_status decode(an_image_scratch *s, const char *path, const uint8_t *data, size_t n,
                        double max_megapixels, int lenient, an_scale_choice choose, void *ctx,
                        an_decoded *out, uint8_t **own)
{
    memset(out, 0, sizeof *out);
    an_status st = check_signature(path, data, n);
    if (st != AN_OK) return st;
    volatile size_t len = n;   /* read after setjmp */

    struct jpeg_decompress_struct cinfo;
    struct jpeg_source_mgr src;
    jerr_mgr jerr;
    uint8_t *volatile fresh = NULL;
    cinfo.mem = NULL;
    init_errors(&cinfo, &jerr, lenient);
    if (setjmp(jerr.jump)) {
        jpeg_destroy_decompress(&cinfo);
        free(fresh);
        return jpeg_failure(path, &jerr);
    }
    jpeg_create_decompress(&cinfo);
    set_source(&cinfo, &src, data, len);
    jpeg_read_header(&cinfo, TRUE);
    out->width = (int)cinfo.image_width;
    out->height = (int)cinfo.image_height;
    if ((st = check_header(path, &cinfo, max_megapixels)) != AN_OK) {
        jpeg_destroy_decompress(&cinfo);
        return st;
    }
    int cmyk = cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK;
    cinfo.out_color_space = cmyk ? JCS_CMYK : JCS_RGB;
    int m = choose ? choose(ctx, out->width, out->height) : 8;
    if (m < 1) m = 1;
    if (m > 8) m = 8;
    cinfo.scale_num = (unsigned)m;
    cinfo.scale_denom = 8;
    /* libjpeg's defaults otherwise (accurate integer IDCT, fancy upsampling),
     * as PIL decodes: merged upsampling would save 7% and IFAST 3% more of
     * a 500 x 375 decode, not worth their loss of accuracy. */
    jpeg_calc_output_dimensions(&cinfo);
    size_t w = cinfo.output_width, h = cinfo.output_height;
    size_t bytes = w * h * 3;
    if (own) {
        fresh = malloc(bytes ? bytes : 1);
        if (!fresh) {
            jpeg_destroy_decompress(&cinfo);
            return an_fail(AN_ERR_MEMORY, "'%s': out of memory for %zu x %zu RGB pixels", path, w, h);
        }
    } else if (!grow((void **)&s->rgb, &s->rgb_cap, bytes + 16)) {   /* slack: 4-byte tap loads */
        jpeg_destroy_decompress(&cinfo);
        return an_fail(AN_ERR_MEMORY, "'%s': out of memory for %zu x %zu RGB pixels", path, w, h);
    }
    uint8_t *rgb = own ? fresh : s->rgb;
    /* the sampler's 8-byte tap loads read into the slack (the unused lanes):
     * zero it, so that no output depends on uninitialised bytes (valgrind) */
    if (!own) memset(rgb + bytes, 0, 16);
    if (cmyk && !grow((void **)&s->row, &s->row_cap, w * 4)) {
        jpeg_destroy_decompress(&cinfo);
        free(fresh);
        return an_fail(AN_ERR_MEMORY, "'%s': out of memory", path);
    }
    jpeg_start_decompress(&cinfo);
    if (cinfo.output_components != (cmyk ? 4 : 3) || cinfo.output_width != w ||
        cinfo.output_height != h) {
        jpeg_destroy_decompress(&cinfo);
        free(fresh);
        return an_fail(AN_ERR_FORMAT, "'%s': unexpected JPEG output layout", path);
    }
    int inverted = cinfo.saw_Adobe_marker;
    while (cinfo.output_scanline < cinfo.output_height) {
        if (cmyk) {
            JSAMPROW r = s->row;
            uint8_t *dst = rgb + (size_t)cinfo.output_scanline * w * 3;
            if (jpeg_read_scanlines(&cinfo, &r, 1) == 1) cmyk_to_rgb(s->row, dst, (int)w, inverted);
        } else {
            JSAMPROW rows[16];
            int k = 0;
            for (; k < 16 && cinfo.output_scanline + k < cinfo.output_height; k++)
                rows[k] = rgb + (size_t)(cinfo.output_scanline + k) * w * 3;
            jpeg_read_scanlines(&cinfo, rows, (JDIMENSION)k);
        }
    }
    jpeg_finish_decompress(&cinfo);
    jpeg_destroy_decompress(&cinfo);
    out->out_w = (int)w;
    out->out_h = (int)h;
    out->scale_num = m;
    out->rgb = rgb;
    if (jerr.warning[0])
        snprintf(out->warning, sizeof out->warning, "%s", jerr.warning);
    if (own) *own = rgb;
    return AN_OK;
}

an_status an_jpeg_decode_scaled(an_image_scratch *s, const char *path, double max_megapixels,
                                int lenient, an_scale_choice choose, void *ctx, an_decoded *out)
{
    memset(out, 0, sizeof *out);
    size_t n;
    an_status st = read_file(s, path, &n);
    if (st != AN_OK) return st;
    return decode(s, path, s->file, n, max_megapixels, lenient, choose, ctx, out, NULL);
}

an_status an_jpeg_decode_scaled_memory(an_image_scratch *s, const char *name, const uint8_t *data,
                                       size_t size, double max_megapixels, int lenient,
                                       an_scale_choice choose, void *ctx, an_decoded *out)
{
    if (!name || !name[0]) name = "<memory>";
    if (!data && size) {
        memset(out, 0, sizeof *out);
        return an_fail(AN_ERR_ARGUMENT, "'%s': no data for %zu bytes", name, size);
    }
    return decode(s, name, data ? data : (const uint8_t *)"", size, max_megapixels, lenient, choose,
                  ctx, out, NULL);
}

an_status an_jpeg_read_rgb(const char *path, double max_megapixels, uint8_t **rgb, int *width,
                           int *height)
{
    if (!rgb || !width || !height) return an_fail(AN_ERR_ARGUMENT, "an_jpeg_read_rgb: NULL output");
    *rgb = NULL;
    *width = *height = 0;
    an_image_scratch s;
    memset(&s, 0, sizeof s);
    an_decoded d;
    size_t n;
    an_status st = read_file(&s, path, &n);
    if (st == AN_OK) st = decode(&s, path, s.file, n, max_megapixels, 0, NULL, NULL, &d, rgb);
    an_image_scratch_free(&s);
    if (st == AN_OK) {
        *width = d.out_w;
        *height = d.out_h;
    }
    return st;
}
