// Package process examines an uploaded file and prepares it for storage:
// its real type, and for images and videos their size, a thumbnail, a
// blurhash, and a copy of the image without its metadata.
//
// It is a library with no state: Process takes a local file path and
// Limits and returns a Result. The server calls it after an upload
// finishes, off the request path of other users. Client-side encrypted
// uploads (tus metadata encrypted=true) must not be passed to it: they are
// opaque bytes stored and served as application/octet-stream, and their
// thumbnail and blurhash travel inside the encrypted message.
//
// # Types
//
// Sniff reads the type from the first 512 bytes (net/http's sniffer plus
// MP4/QuickTime/3GP/HEIC/AVIF `ftyp` brands and WebM/Matroska EBML).
// Classify keeps only passive formats (images, audio, video, PDF, archives,
// plain text) and turns everything else, and any file whose bytes belie a
// declared image/, video/ or audio/ type (a ".jpg" that is HTML), into
// application/octet-stream.
//
// # Images: what is stripped
//
// JPEG, PNG, GIF and WebP are copied without their metadata, block by
// block, leaving the compressed pixels untouched (no quality loss):
//
//   - JPEG: every APPn segment (EXIF with GPS, XMP, ICC profiles, IPTC,
//     MPF, JFIF thumbnails) except Adobe's APP14 colour flag, every COM
//     segment, and all bytes after EOI (phones append motion videos and
//     depth maps there).
//   - PNG: every chunk but the image, transparency, colour-space, gamma,
//     background, pixel-aspect and APNG animation chunks: tEXt, zTXt, iTXt
//     (XMP), eXIf, tIME, iCCP and private chunks go, and bytes after IEND.
//   - GIF: comment extensions and application extensions other than the
//     looping ones (XMP lives in one); all frames are kept.
//   - WebP: the EXIF, XMP and ICCP chunks (their VP8X flags cleared) and
//     unknown chunks.
//
// ICC profiles are dropped with the rest (a profile names the device):
// wide-gamut photos then show as sRGB, slightly less saturated.
//
// An EXIF orientation (2 to 8) in a JPEG APP1 segment or a PNG eXIf chunk is
// applied: the image is decoded, turned upright and re-encoded (JPEG at
// quality 90, PNG losslessly), so clients that ignore EXIF show it right.
// A WebP's orientation is not applied (WebP encoders store pixels upright;
// Go has no WebP encoder). When nothing had to be removed,
// Result.CleanedPath is empty and the original can be stored as it is.
//
// HEIC and AVIF are recognised but not processed: no thumbnail, and their
// metadata is NOT removed (no decoder or container rewriter in Go's
// standard library or x/image). Clients should send JPEG.
//
// # Images: limits and memory
//
// Before any pixel is decoded, the header's width x height is checked
// against Limits.MaxPixels (default 50 million): a 100000 x 100000 PNG of a
// few hundred bytes is refused with a *LimitError (errors.Is ErrTooLarge)
// after reading a few bytes. A GIF is decoded one frame only. An
// animated WebP is stripped but gets no thumbnail (x/image/webp decodes no
// animation).
//
// Memory is that of one decoded image plus a small fixed part. Measured for
// 50-megapixel JPEGs (docs/benchmarks.md, "Media processing"): a baseline
// 4:2:0 JPEG peaks at 85 MB of heap (its YCbCr planes take 1.5 bytes a
// pixel), 160 MB when an EXIF orientation makes Process turn and re-encode
// it (a second copy), and a progressive JPEG at 385 MB (Go's decoder keeps
// every component's DCT coefficients as int32). PNG takes 4 bytes a pixel
// (8 for 16-bit). Limit concurrency to bound the total: N parallel Process
// calls may each take that much.
//
// # Thumbnails and blurhash
//
// The thumbnail's longest side is Limits.MaxThumbSide (default 320; smaller
// images keep their size), scaled with x/image/draw's Catmull-Rom kernel
// (after an ApproxBiLinear reduction to 3x the thumbnail's size for large
// images: 33 ms instead of 380 ms for 12 MP; about 230 ms for a whole
// 12 MP JPEG with its decoding), encoded as JPEG quality 80 (PNG if it has transparent pixels). The
// blurhash (4 x 3 components, github.com/bbrks/go-blurhash, MIT) is computed
// from the thumbnail scaled to at most 64 pixels a side. That encoder
// rounds the average colour of very dark images (sRGB channels below about
// 11/255) down to half (for 8/255 it stores 4/255): invisible in a
// placeholder, but a decoder will not reproduce those values exactly.
//
// # Video and ffmpeg sandboxing
//
// MP4, QuickTime, 3GP, WebM and Matroska files get their displayed size
// and duration from ffprobe and a poster thumbnail (the first frame) from
// ffmpeg, when both are installed (they are optional: without them a video
// gets only its type, and no error). Each runs as a subprocess without a
// shell, with an empty environment, "/" as working directory and stdin from
// /dev/null; with -protocol_whitelist file and the demuxer forced from the
// sniffed type (mov or matroska), so a file cannot make ffmpeg read a
// playlist, another file or the network; mov's external data references
// are off by default. Each run is killed after Limits.FFmpegTimeout
// (default 30 s) or when ctx ends; its output is capped (1 MiB of ffprobe
// JSON, 16 MiB of poster) and the poster is decoded only after its header
// shows it at most MaxThumbSide a side. ffmpeg decodes with one thread, no
// single allocation over 256 MiB (-max_alloc), and no poster is made from
// a video whose frames have more than Limits.MaxPixels pixels. Its total
// memory is not capped here: run parleyd under a cgroup limit (systemd
// MemoryMax=) to bound it.
package process
