package process

import (
	"image"
	"image/draw"
)

// orientedSize is the size an image of w x h shows at under EXIF
// orientation o (5 to 8 swap the sides).
func orientedSize(w, h, o int) (int, int) {
	if o >= 5 && o <= 8 {
		return h, w
	}
	return w, h
}

// orient returns img turned upright according to EXIF orientation o (1 to
// 8; 1 returns img itself). It works on the decoders' own pixel layouts
// (YCbCr planes keep their subsampling), so it costs one more copy of the
// pixels and no conversion; a layout it does not know is converted to NRGBA
// first. The result's bounds start at (0, 0).
func orient(img image.Image, o int) image.Image {
	if o < 2 || o > 8 {
		return img
	}
	b := img.Bounds()
	w, h := b.Dx(), b.Dy()
	dw, dh := orientedSize(w, h, o)
	dr := image.Rect(0, 0, dw, dh)
	switch src := img.(type) {
	case *image.YCbCr:
		ratio := src.SubsampleRatio
		if o >= 5 {
			switch ratio {
			case image.YCbCrSubsampleRatio422:
				ratio = image.YCbCrSubsampleRatio440
			case image.YCbCrSubsampleRatio440:
				ratio = image.YCbCrSubsampleRatio422
			case image.YCbCrSubsampleRatio420, image.YCbCrSubsampleRatio444:
			default: // 4:1:1 and 4:1:0 have no transposed form
				return orient(toNRGBA(src), o)
			}
		}
		dst := image.NewYCbCr(dr, ratio)
		orientPlane(dst.Y, dst.YStride, src.Y[src.YOffset(b.Min.X, b.Min.Y):], src.YStride, w, h, 1, o)
		cw, ch := chromaSize(src)
		co := src.COffset(b.Min.X, b.Min.Y)
		orientPlane(dst.Cb, dst.CStride, src.Cb[co:], src.CStride, cw, ch, 1, o)
		orientPlane(dst.Cr, dst.CStride, src.Cr[co:], src.CStride, cw, ch, 1, o)
		return dst
	case *image.Gray:
		dst := image.NewGray(dr)
		orientPlane(dst.Pix, dst.Stride, src.Pix[src.PixOffset(b.Min.X, b.Min.Y):], src.Stride, w, h, 1, o)
		return dst
	case *image.Gray16:
		dst := image.NewGray16(dr)
		orientPlane(dst.Pix, dst.Stride, src.Pix[src.PixOffset(b.Min.X, b.Min.Y):], src.Stride, w, h, 2, o)
		return dst
	case *image.RGBA:
		dst := image.NewRGBA(dr)
		orientPlane(dst.Pix, dst.Stride, src.Pix[src.PixOffset(b.Min.X, b.Min.Y):], src.Stride, w, h, 4, o)
		return dst
	case *image.NRGBA:
		dst := image.NewNRGBA(dr)
		orientPlane(dst.Pix, dst.Stride, src.Pix[src.PixOffset(b.Min.X, b.Min.Y):], src.Stride, w, h, 4, o)
		return dst
	case *image.RGBA64:
		dst := image.NewRGBA64(dr)
		orientPlane(dst.Pix, dst.Stride, src.Pix[src.PixOffset(b.Min.X, b.Min.Y):], src.Stride, w, h, 8, o)
		return dst
	case *image.NRGBA64:
		dst := image.NewNRGBA64(dr)
		orientPlane(dst.Pix, dst.Stride, src.Pix[src.PixOffset(b.Min.X, b.Min.Y):], src.Stride, w, h, 8, o)
		return dst
	case *image.CMYK:
		dst := image.NewCMYK(dr)
		orientPlane(dst.Pix, dst.Stride, src.Pix[src.PixOffset(b.Min.X, b.Min.Y):], src.Stride, w, h, 4, o)
		return dst
	case *image.Paletted:
		dst := image.NewPaletted(dr, src.Palette)
		orientPlane(dst.Pix, dst.Stride, src.Pix[src.PixOffset(b.Min.X, b.Min.Y):], src.Stride, w, h, 1, o)
		return dst
	}
	return orient(toNRGBA(img), o)
}

// chromaSize is the size of a YCbCr image's Cb and Cr planes.
func chromaSize(m *image.YCbCr) (int, int) {
	w, h := m.Rect.Dx(), m.Rect.Dy()
	switch m.SubsampleRatio {
	case image.YCbCrSubsampleRatio422:
		return (w + 1) / 2, h
	case image.YCbCrSubsampleRatio420:
		return (w + 1) / 2, (h + 1) / 2
	case image.YCbCrSubsampleRatio440:
		return w, (h + 1) / 2
	case image.YCbCrSubsampleRatio411:
		return (w + 3) / 4, h
	case image.YCbCrSubsampleRatio410:
		return (w + 3) / 4, (h + 1) / 2
	}
	return w, h
}

// toNRGBA converts any image to NRGBA with bounds at the origin.
func toNRGBA(img image.Image) *image.NRGBA {
	b := img.Bounds()
	dst := image.NewNRGBA(image.Rect(0, 0, b.Dx(), b.Dy()))
	draw.Draw(dst, dst.Rect, img, b.Min, draw.Src)
	return dst
}

// orientPlane writes into dst (stride dstStride) the w x h plane src
// (stride srcStride, bpp bytes a pixel) transformed by EXIF orientation o.
// For destination pixel (dx, dy) it reads source pixel (sx, sy):
//
//	2 mirror:     sx = w-1-dx  sy = dy
//	3 rotate 180: sx = w-1-dx  sy = h-1-dy
//	4 flip:       sx = dx      sy = h-1-dy
//	5 transpose:  sx = dy      sy = dx
//	6 rotate 90:  sx = dy      sy = h-1-dx
//	7 transverse: sx = w-1-dy  sy = h-1-dx
//	8 rotate 270: sx = w-1-dy  sy = dx
func orientPlane(dst []byte, dstStride int, src []byte, srcStride, w, h, bpp, o int) {
	dw, dh := orientedSize(w, h, o)
	for dy := range dh {
		row := dst[dy*dstStride : dy*dstStride+dw*bpp]
		if o <= 4 {
			sy := dy
			if o == 3 || o == 4 {
				sy = h - 1 - dy
			}
			srow := src[sy*srcStride : sy*srcStride+w*bpp]
			if o == 4 {
				copy(row, srow)
				continue
			}
			for dx := range dw { // 2, 3: mirrored row
				sx := w - 1 - dx
				copy(row[dx*bpp:dx*bpp+bpp], srow[sx*bpp:sx*bpp+bpp])
			}
			continue
		}
		sx := dy
		if o == 7 || o == 8 {
			sx = w - 1 - dy
		}
		for dx := range dw {
			sy := dx
			if o == 6 || o == 7 {
				sy = h - 1 - dx
			}
			i := sy*srcStride + sx*bpp
			copy(row[dx*bpp:dx*bpp+bpp], src[i:i+bpp])
		}
	}
}
