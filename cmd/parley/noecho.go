package main

import (
	"io"
	"os"
	"os/exec"
)

// noEcho turns off the terminal's echo while a password is typed, when
// stdin is a terminal, and returns what turns it back on. It uses stty,
// present on every Unix; without it the password is echoed.
func noEcho(in io.Reader) (restore func()) {
	f, ok := in.(*os.File)
	if !ok {
		return func() {}
	}
	if st, err := f.Stat(); err != nil || st.Mode()&os.ModeCharDevice == 0 {
		return func() {}
	}
	stty := func(arg string) error {
		cmd := exec.Command("stty", arg)
		cmd.Stdin = f
		return cmd.Run()
	}
	if stty("-echo") != nil {
		return func() {}
	}
	return func() { _ = stty("echo") }
}
