package demo

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// screen writes the demo's story: event lines that scroll, and on a terminal
// a live panel below them that is redrawn in place. Without a terminal it
// writes plain lines and no escape sequences, so the output can be read back.
type screen struct {
	w     io.Writer
	tty   bool // a terminal in raw mode: ANSI escapes, and "\r\n" for a new line
	width int
	start time.Time
	panel []string // the live panel's lines, last drawn
	drawn int      // how many panel lines are on the screen now
}

// event writes one timestamped line: tag says who speaks ("HA" for what Home
// Assistant sees, "demo" for what the demo does to the meter).
func (s *screen) event(now time.Time, tag, format string, args ...any) {
	head := fmt.Sprintf("%6.1fs  %-4s  ", now.Sub(s.start).Seconds(), tag)
	text := fmt.Sprintf(format, args...)
	if !s.tty { // one event, one line: easy to grep
		s.write(head + text)
		return
	}
	s.write(fold(head, text, s.width-1)...)
}

// write writes lines above the panel.
func (s *screen) write(lines ...string) {
	var b strings.Builder
	s.erase(&b)
	for _, l := range lines {
		b.WriteString(l)
		b.WriteString(s.newline())
	}
	s.draw(&b)
	_, _ = io.WriteString(s.w, b.String())
}

// setPanel replaces the live panel (a terminal only).
func (s *screen) setPanel(lines []string) {
	if !s.tty {
		return
	}
	s.panel = lines
	var b strings.Builder
	s.erase(&b)
	s.draw(&b)
	_, _ = io.WriteString(s.w, b.String())
}

// close leaves the panel on the screen and the cursor below it.
func (s *screen) close() {
	if s.tty {
		_, _ = io.WriteString(s.w, "\x1b[?25h") // the cursor, hidden while drawing
	}
}

func (s *screen) newline() string {
	if s.tty {
		return "\r\n"
	}
	return "\n"
}

func (s *screen) erase(b *strings.Builder) {
	if s.drawn > 0 {
		fmt.Fprintf(b, "\r\x1b[%dA\x1b[J", s.drawn) // up to the panel's first line, clear to the end
	}
	s.drawn = 0
}

func (s *screen) draw(b *strings.Builder) {
	if !s.tty || len(s.panel) == 0 {
		return
	}
	b.WriteString("\x1b[?25l")
	for _, l := range s.panel {
		b.WriteString(clip(l, s.width-1)) // a wrapped line would break the count of lines to erase
		b.WriteString("\x1b[K\r\n")
	}
	s.drawn = len(s.panel)
}

// clip cuts text to n runes; ANSI escapes count too, so panels use none.
func clip(text string, n int) string {
	r := []rune(text)
	if n <= 0 || len(r) <= n {
		return text
	}
	return string(r[:n])
}

// wrap lays out words after a fixed-width label, continuing on indented lines
// so no line is wider than width.
func wrap(label string, words []string, width int) []string {
	var lines []string
	line := label
	indent := strings.Repeat(" ", len([]rune(label)))
	empty := true
	for i, w := range words {
		sep := ", "
		if i == len(words)-1 {
			sep = ""
		}
		piece := w + sep
		if !empty && len([]rune(line))+len([]rune(strings.TrimRight(piece, " "))) > width {
			lines = append(lines, strings.TrimRight(line, " "))
			line, empty = indent, true
		}
		line += piece
		empty = false
	}
	return append(lines, strings.TrimRight(line, " "))
}

// fold breaks text at spaces into lines of at most width runes, the first
// after head and the others indented as far.
func fold(head, text string, width int) []string {
	indent := strings.Repeat(" ", len([]rune(head)))
	var lines []string
	line := head
	for i, w := range strings.Fields(text) {
		if i > 0 && len([]rune(line))+1+len([]rune(w)) > width {
			lines = append(lines, line)
			line = indent + w
			continue
		}
		if i > 0 {
			line += " "
		}
		line += w
	}
	return append(lines, line)
}
