package process

import "encoding/binary"

// maxExifIFDEntries bounds the entries exifOrientation looks at, whatever
// the count field claims (an IFD0 of a camera has a few dozen).
const maxExifIFDEntries = 1024

// exifOrientation returns the Orientation tag (0x0112) of IFD0 in a TIFF
// structure (the body of a JPEG APP1 "Exif\0\0" segment, a PNG eXIf chunk or
// a WebP EXIF chunk), 1 to 8, or 1 when there is none or it is malformed.
// It reads only within tiff, looks at most at maxExifIFDEntries entries and
// follows no offsets other than the one to IFD0: no allocation, no loop that
// input can lengthen beyond that.
func exifOrientation(tiff []byte) int {
	if len(tiff) < 8 {
		return 1
	}
	var order binary.ByteOrder
	switch string(tiff[:2]) {
	case "II":
		order = binary.LittleEndian
	case "MM":
		order = binary.BigEndian
	default:
		return 1
	}
	if order.Uint16(tiff[2:4]) != 42 {
		return 1
	}
	ifd := uint64(order.Uint32(tiff[4:8]))
	if ifd < 8 || ifd+2 > uint64(len(tiff)) {
		return 1
	}
	count := int(order.Uint16(tiff[ifd:]))
	entries := tiff[ifd+2:]
	count = min(count, len(entries)/12, maxExifIFDEntries)
	for i := range count {
		e := entries[i*12 : i*12+12]
		if order.Uint16(e[0:2]) != 0x0112 {
			continue
		}
		// type SHORT (3), count 1: the value sits in the first two bytes of
		// the value field.
		if order.Uint16(e[2:4]) != 3 || order.Uint32(e[4:8]) < 1 {
			return 1
		}
		if o := int(order.Uint16(e[8:10])); o >= 1 && o <= 8 {
			return o
		}
		return 1
	}
	return 1
}
