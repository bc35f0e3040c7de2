// Package tui is crewgate's terminal while `crewgate run` owns one: the crew
// runs on a pseudo-terminal that crewgate relays, its output flows above a
// one-line status, and an approval prompt takes the bottom rows when a
// request waits for the human.
//
// # Rows
//
// The crew's pseudo-terminal is the user's terminal less one row, and a
// scroll region (DECSTBM, rows 1 to height-1) keeps the crew's output and
// scrolling above the status line in the last row. Everything crewgate draws
// is wrapped in save and restore cursor (DECSC/DECRC), which also restore the
// crew's colours, character set and origin mode, and is written only between
// the crew's escape sequences and UTF-8 characters (a small parser follows
// the crew's output), never inside one.
//
// A prompt needs more rows than the status line. When one opens, the crew's
// output is paused and the reserved area grows the way apt's progress bar
// makes room: one index (IND) per extra row from the crew's cursor, then as
// many cursor-ups. Lines at and above the crew's cursor scroll up into view
// (or off the top, as any output would); only blank rows below the cursor
// become prompt rows, so nothing the crew printed is overwritten. The scroll
// region shrinks to match. When the prompt closes the freed rows are cleared
// and given back to the crew, whose cursor has not moved relative to its
// text. The pseudo-terminal's size does not change for a prompt: the crew is
// paused while the prompt is up, so it cannot draw into the rows it lent.
//
// The crew's output is relayed as read, chunk by chunk, with no line
// buffering. While a prompt is drawn the relay stops reading the
// pseudo-terminal, so the crew blocks on its own writes once the kernel's
// buffer is full; at most one read buffer is held.
//
// # Keys
//
// Keystrokes go to the crew unchanged, except while a prompt is open: then
// they go to the prompt and never reach the crew. `a` allows once, `s` for
// the session, `d` or Esc denies, and Ctrl-C, which otherwise goes to the
// crew through the pseudo-terminal (whose line discipline turns it into
// SIGINT for the crew's foreground process group), also denies: it fails
// closed. So that a key typed for the crew a moment before a prompt appears
// does not decide it, `a`, `s` and `d` are ignored for Options.KeyDelay after
// each prompt is shown; Esc and Ctrl-C deny at once. During a prompt only a
// read that holds a single key decides: pastes and escape sequences (arrow
// keys, mouse reports) are dropped.
//
// # The model
//
// The prompt and status line are a bubbletea model (Model) with a pure
// Update; Source.Decide runs in a tea.Cmd. The relay runs the model itself
// rather than in a tea.Program: a Program wants to own the input (here the
// relay must route each read either to the crew or to the prompt, with no
// race) and the whole screen (here the model is painted into reserved rows
// between the crew's writes). The relay feeds it key, prompt, status, tick
// and window-size messages, runs the commands it returns, and paints View.
// The same model works in a tea.Program, e.g. for answering prompts from a
// second terminal.
//
// # Limits
//
// Known terminal edge cases, not handled: a crew that saves the cursor
// (DECSC) and restores it much later loses its saved position if crewgate
// repaints in between (repaints wait up to 300 ms for the restore); a crew
// that sets its own scroll region keeps it until a prompt or a resize, which
// set crewgate's again; output that races a window resize can leave a
// fragment of the old status line in the crew's rows; a full-screen crew may
// need a redraw (Ctrl-L) after a prompt; CSI 18t and similar queries report
// the whole terminal's size; answers to the crew's terminal queries that
// arrive while a prompt is open are dropped with the other keys; insert mode
// (IRM) set by the crew is not undone while crewgate draws; a lone ESC byte
// that is the first half of a split escape sequence denies (fail closed). The
// crew's pseudo-terminal starts with the kernel's default modes, not a copy
// of the user's. A panic outside the relay's goroutines restores the
// terminal only if the caller deferred Close.
//
// Nothing drawn comes from the crew or a request unfiltered: every field is
// stripped of control characters (including ESC and bidi overrides) and
// capped in length before it is styled.
package tui
