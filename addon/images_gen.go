//go:build ignore

// images_gen.go draws the add-on store's icon.png (128×128) and logo.png
// (250×100): a lightning bolt on a meter's display, and beside it "EM340"
// in a blocky display font. Run from addon/: go run images_gen.go [-o dir].
// TestImagesAreGenerated checks the committed files are its output.
package main

import (
	"flag"
	"image"
	"image/color"
	"image/png"
	"log"
	"os"
	"path/filepath"
)

var (
	background = color.RGBA{0x12, 0x3a, 0x5e, 0xff} // dark blue
	display    = color.RGBA{0x1d, 0x5a, 0x8c, 0xff}
	bolt       = color.RGBA{0xff, 0xc4, 0x1f, 0xff} // amber
	text       = color.RGBA{0x12, 0x3a, 0x5e, 0xff}
)

func main() {
	out := flag.String("o", ".", "directory to write icon.png and logo.png to")
	flag.Parse()
	icon := image.NewRGBA(image.Rect(0, 0, 128, 128))
	drawIcon(icon, 0, 0, 128)
	logo := image.NewRGBA(image.Rect(0, 0, 250, 100))
	drawIcon(logo, 0, 0, 100)
	drawText(logo, 114, 36, 4, "EM340")
	for name, img := range map[string]image.Image{"icon.png": icon, "logo.png": logo} {
		f, err := os.Create(filepath.Join(*out, name))
		if err != nil {
			log.Fatal(err)
		}
		if err := png.Encode(f, img); err != nil {
			log.Fatal(err)
		}
		if err := f.Close(); err != nil {
			log.Fatal(err)
		}
	}
}

// drawIcon draws the icon in the size×size square at (x0, y0): a rounded
// square, a display inset, and a bolt across it.
func drawIcon(img *image.RGBA, x0, y0, size int) {
	s := float64(size)
	r := s * 0.18
	for y := 0; y < size; y++ {
		for x := 0; x < size; x++ {
			fx, fy := float64(x)+0.5, float64(y)+0.5
			if !inRoundedRect(fx, fy, 0, 0, s, s, r) {
				continue
			}
			c := background
			if inRoundedRect(fx, fy, s*0.12, s*0.12, s*0.88, s*0.88, r*0.6) {
				c = display
			}
			if inPolygon(fx/s, fy/s, boltShape()) {
				c = bolt
			}
			img.Set(x0+x, y0+y, c)
		}
	}
}

// boltShape is a lightning bolt in unit coordinates.
func boltShape() [][2]float64 {
	return [][2]float64{{0.58, 0.16}, {0.30, 0.55}, {0.48, 0.55}, {0.40, 0.86}, {0.72, 0.44}, {0.54, 0.44}, {0.64, 0.16}}
}

func inRoundedRect(x, y, x0, y0, x1, y1, r float64) bool {
	if x < x0 || x > x1 || y < y0 || y > y1 {
		return false
	}
	cx := min(max(x, x0+r), x1-r)
	cy := min(max(y, y0+r), y1-r)
	return (x-cx)*(x-cx)+(y-cy)*(y-cy) <= r*r
}

// inPolygon is the even-odd rule.
func inPolygon(x, y float64, p [][2]float64) bool {
	in := false
	for i, j := 0, len(p)-1; i < len(p); j, i = i, i+1 {
		xi, yi, xj, yj := p[i][0], p[i][1], p[j][0], p[j][1]
		if (yi > y) != (yj > y) && x < (xj-xi)*(y-yi)/(yj-yi)+xi {
			in = !in
		}
	}
	return in
}

// glyphs is a 5×7 display font for the letters the logo needs.
var glyphs = map[rune][7]string{
	'E': {"#####", "#....", "#....", "####.", "#....", "#....", "#####"},
	'M': {"#...#", "##.##", "#.#.#", "#.#.#", "#...#", "#...#", "#...#"},
	'3': {"####.", "....#", "....#", ".###.", "....#", "....#", "####."},
	'4': {"...#.", "..##.", ".#.#.", "#..#.", "#####", "...#.", "...#."},
	'0': {".###.", "#...#", "#..##", "#.#.#", "##..#", "#...#", ".###."},
}

// drawText writes s at (x, y) with each font pixel a scale×scale square.
func drawText(img *image.RGBA, x, y, scale int, s string) {
	for _, ch := range s {
		g := glyphs[ch]
		for row, line := range g {
			for col, px := range line {
				if px != '#' {
					continue
				}
				for dy := 0; dy < scale; dy++ {
					for dx := 0; dx < scale; dx++ {
						img.Set(x+col*scale+dx, y+row*scale+dy, text)
					}
				}
			}
		}
		x += 6 * scale
	}
}
