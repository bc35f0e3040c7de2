package mask

import (
	"bytes"
	"encoding/base64"
	"io"
	"math/rand/v2"
	"net/url"
	"os"
	"regexp"
	"strings"
	"testing"
)

// Fake secrets with the real shapes.
var (
	awsKey       = "AKIAIOSFODNN7EXAMPLE"
	githubToken  = "ghp_" + strings.Repeat("aB3", 12)
	githubPAT    = "github_pat_11ABCDEFG0" + strings.Repeat("xY7_", 18)
	openaiKey    = "sk-proj-" + strings.Repeat("Ab1_", 12)
	anthropicKey = "sk-ant-api03-" + strings.Repeat("Xy9-", 23) + "zAA"
	slackToken   = "xoxb-1234567890-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx"
	stripeKey    = "sk_live_4eC39HqLyjWDarjtT1zdp7dc"
	googleKey    = "AIzaSyD-abcdefghijklmnopqrstuvwxyz01234"
	jwtToken     = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
	pemKey       = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun\nVTLw7onLRnrq0/IzW7yWR7QkrmBL7jTKEn5u+qKhbwKfBstIs+bMY2Zkp18gnTxK\n-----END RSA PRIVATE KEY-----"
	email        = "jane.doe+crew@mail.example.com"
	visa         = "4111 1111 1111 1111"
	amex         = "378282246310005"
	ssn          = "123-45-6789"
)

func mustEngine(t testing.TB, cfg Config) *Engine {
	t.Helper()
	e, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestDetectors(t *testing.T) {
	e := mustEngine(t, Config{})
	tests := []struct {
		in, want string
	}{
		{"key " + awsKey + " end", "key [MASKED:aws_access_key] end"},
		{"ASIA" + awsKey[4:], "[MASKED:aws_access_key]"},
		{"x" + awsKey, "x" + awsKey},     // not on a word boundary
		{awsKey + "abc", awsKey + "abc"}, // runs on into a word
		{"token=" + githubToken, "token=[MASKED:github_token]"},
		{githubPAT, "[MASKED:github_token]"},
		{"OPENAI_API_KEY=" + openaiKey, "OPENAI_API_KEY=[MASKED:openai_key]"},
		{"x-api-key: " + anthropicKey, "x-api-key: [MASKED:anthropic_key]"},
		{slackToken, "[MASKED:slack_token]"},
		{"'" + stripeKey + "'", "'[MASKED:stripe_key]'"},
		{googleKey, "[MASKED:google_api_key]"},
		{"Bearer " + jwtToken, "Bearer [MASKED:jwt]"},
		{"k:\n" + pemKey + "\nrest", "k:\n[MASKED:private_key]\nrest"},
		{"mail " + email + ".", "mail [MASKED:email]."},
		{"<" + email + ">", "<[MASKED:email]>"},
		{"card " + visa + " exp", "card [MASKED:credit_card] exp"},
		{"card 4111-1111-1111-1111", "card [MASKED:credit_card]"},
		{"amex " + amex, "amex [MASKED:credit_card]"},
		{"4111111111111112", "4111111111111112"}, // bad Luhn
		{"ssn " + ssn + ".", "ssn [MASKED:us_ssn]."},
		{"000-12-3456 666-12-3456 123-00-4567", "000-12-3456 666-12-3456 123-00-4567"},
		{"\n-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----", "\n-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----"},
		// An unterminated key block is masked up to the end (at most 16 KiB).
		{"-----BEGIN PRIVATE KEY-----\nMIIE", "[MASKED:private_key]"},
	}
	for _, tt := range tests {
		if got := e.MaskString(tt.in); got != tt.want {
			t.Errorf("MaskString(%q)\n got %q\nwant %q", tt.in, got, tt.want)
		}
	}
}

func TestCleanCorpusUnchanged(t *testing.T) {
	e := mustEngine(t, Config{})
	b, err := os.ReadFile("testdata/clean.txt")
	if err != nil {
		t.Fatal(err)
	}
	if got := e.MaskString(string(b)); got != string(b) {
		t.Errorf("clean corpus changed:\n%s", diffLines(string(b), got))
	}
}

func diffLines(a, b string) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	var out []string
	for i := range min(len(al), len(bl)) {
		if al[i] != bl[i] {
			out = append(out, "- "+al[i], "+ "+bl[i])
		}
	}
	return strings.Join(out, "\n")
}

func TestConfigErrors(t *testing.T) {
	tests := []struct {
		cfg  Config
		want string
	}{
		{Config{Detectors: []string{"aws_access_key", "nope"}}, `unknown detector "nope"`},
		{Config{Custom: []Custom{{Name: "emp", Pattern: "EMP-(\\d{6}"}}}, `custom detector "emp"`},
		{Config{Custom: []Custom{{Name: "empty", Pattern: "a*"}}}, "matches the empty string"},
		{Config{Custom: []Custom{{Name: "email", Pattern: "x+"}}}, `"email": name already used`},
		{Config{Replacement: "{{.Nope"}, "replacement template"},
		{Config{Replacement: "{{.Nope}}"}, "replacement template"},
		{Config{Custom: []Custom{{Name: "m", Pattern: "MASKED"}}}, "is itself masked"},
		{Config{Literals: []Literal{{Name: "tok", Value: "abc"}}}, "shorter than"},
	}
	for _, tt := range tests {
		_, err := New(tt.cfg)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("New(%+v) = %v, want error containing %q", tt.cfg, err, tt.want)
		}
	}
}

func TestSelectDetectors(t *testing.T) {
	e := mustEngine(t, Config{Detectors: []string{"email", "aws_access_key"}})
	if got := e.MaskString(awsKey + " " + email + " " + githubToken); got != "[MASKED:aws_access_key] [MASKED:email] "+githubToken {
		t.Errorf("got %q", got)
	}
	e = mustEngine(t, Config{Detectors: []string{"none"}})
	if got := e.MaskString(awsKey); got != awsKey {
		t.Errorf("none: got %q", got)
	}
}

func TestCustomAndTemplate(t *testing.T) {
	e := mustEngine(t, Config{
		Detectors:   []string{"none"},
		Custom:      []Custom{{Name: "employee_id", Pattern: `EMP-\d{6}`}, {Name: "ticket", Pattern: `(?i)\b[a-z]{2,5}-\d{3,5}\b`}},
		Replacement: "<{{.Name}}>",
	})
	got := e.MaskString("EMP-123456 and EMP-12345 and ops-1234 and OPS-99.")
	want := "<employee_id> and <ticket> and <ticket> and OPS-99."
	if got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestLiteralForms(t *testing.T) {
	secret := "s3cr3t/v@lue+with=chars"
	e := mustEngine(t, Config{Detectors: []string{"none"}, Literals: []Literal{{Name: "openai", Value: secret}}})
	basic := base64.StdEncoding.EncodeToString([]byte("user:" + secret))
	for _, in := range []string{
		secret,
		base64.StdEncoding.EncodeToString([]byte(secret)),
		base64.URLEncoding.EncodeToString([]byte(secret)),
		base64.RawStdEncoding.EncodeToString([]byte("x" + secret + "yz")),
		url.QueryEscape(secret),
		url.PathEscape(secret),
	} {
		got := e.MaskString("a " + in + " b")
		if strings.Contains(got, in) || !strings.Contains(got, "[MASKED:openai]") {
			t.Errorf("%q not masked: %q", in, got)
		}
	}
	// Inside a Basic credential the value sits at an offset in the base64 text.
	if got := e.MaskString("Authorization: Basic " + basic); !strings.Contains(got, "[MASKED:openai]") {
		t.Errorf("basic credential not masked: %q", got)
	}
}

// corpus mixes every kind of secret with text that almost matches, so that
// splits land inside, before and after matches and near-matches.
func corpus() string {
	parts := []string{
		"Hello, world! ", awsKey, " and ", githubToken, "\n", "mail ", email, ", ",
		"sk-short ", openaiKey, " ", anthropicKey, "\t", slackToken, " x ", stripeKey, " ",
		googleKey, " Bearer ", jwtToken, ".\n", pemKey, "\ncard ", visa, " / ", amex, " ssn ", ssn,
		" AKIA", " eyJ.", " jane@", "@ example.com ", "a@b.c ", "4111 1111 ", "123-45-",
		" ghp_short", " -----BEGIN PUBLIC KEY----- ", "tail word",
	}
	return strings.Join(parts, "")
}

// streamMask masks s fed in the given chunk sizes.
func streamMask(e *Engine, s string, cuts []int, esc bool) (string, int) {
	sc := textScanner{e: e, esc: esc}
	var out []byte
	maxHeld := 0
	prev := 0
	for _, c := range cuts {
		out = sc.feed(out, []byte(s[prev:c]), false)
		maxHeld = max(maxHeld, sc.held())
		prev = c
	}
	out = sc.feed(out, []byte(s[prev:]), true)
	return string(out), maxHeld
}

func randomCuts(r *rand.Rand, n int) []int {
	var cuts []int
	for p := 0; ; {
		p += 1 + r.IntN(12)
		if p >= n {
			return cuts
		}
		cuts = append(cuts, p)
	}
}

func TestSplitInvarianceBytes(t *testing.T) {
	e := mustEngine(t, Config{Literals: []Literal{{Value: "hunter2hunter2"}}, Custom: []Custom{{Name: "emp", Pattern: `EMP-\d{6}`}}})
	in := corpus() + " hunter2hunter2 EMP-123456"
	want := e.MaskString(in)
	if want == in {
		t.Fatal("corpus has nothing to mask")
	}
	// Every single cut point.
	for c := 1; c < len(in); c++ {
		if got, _ := streamMask(e, in, []int{c}, false); got != want {
			t.Fatalf("cut at %d:\n got %q\nwant %q", c, got, want)
		}
	}
	// Byte by byte.
	all := make([]int, len(in)-1)
	for i := range all {
		all[i] = i + 1
	}
	if got, _ := streamMask(e, in, all, false); got != want {
		t.Fatalf("byte by byte:\n got %q\nwant %q", got, want)
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 300 {
		cuts := randomCuts(r, len(in))
		if got, _ := streamMask(e, in, cuts, false); got != want {
			t.Fatalf("cuts %v:\n got %q\nwant %q", cuts, got, want)
		}
	}
}

// TestNothingSurvives checks that no detector pattern occurs in the output
// and that masking is idempotent.
func TestNothingSurvives(t *testing.T) {
	e := mustEngine(t, Config{})
	out := e.MaskString(corpus())
	for _, s := range []string{awsKey, githubToken, openaiKey, anthropicKey, slackToken, stripeKey, googleKey, jwtToken, "PRIVATE KEY-----\nMII", email, visa, amex, ssn} {
		if strings.Contains(out, s) {
			t.Errorf("output still contains %q", s)
		}
	}
	if again := e.MaskString(out); again != out {
		t.Errorf("not idempotent:\n once %q\ntwice %q", out, again)
	}
}

// TestHeldBounded checks that a stream holds back nothing once no detector
// could still match, and never more than the longest window.
func TestHeldBounded(t *testing.T) {
	e := mustEngine(t, Config{})
	sc := textScanner{e: e}
	for _, tt := range []struct {
		in   string
		held int
	}{
		{"Hello, world. ", 0},
		{"Hello, world", len("world")}, // could still become world@example.com
		// "key is AKIA…: value" could still become a generic-api-key match.
		{"the key is AKIA", len("key is AKIA")},
		{"IOSFODNN7EXAMPL", len("key is AKIAIOSFODNN7EXAMPL")},
		{"E ok! ", 0},
		{"ends with ", 0},
		{"4111 1111", len("4111 1111")},
		{" then text. ", 0},
	} {
		out := sc.feed(nil, []byte(tt.in), false)
		_ = out
		if sc.held() != tt.held {
			t.Errorf("after %q held %d bytes, want %d", tt.in, sc.held(), tt.held)
		}
	}
	// A stream of key material with no END line is held for at most 16 KiB.
	sc = textScanner{e: e}
	var out []byte
	out = sc.feed(out, []byte("-----BEGIN PRIVATE KEY-----\n"), false)
	for range 100 {
		out = sc.feed(out, bytes.Repeat([]byte("A"), 1000), false)
		if sc.held() > maxPEM {
			t.Fatalf("held %d bytes", sc.held())
		}
	}
	if !bytes.HasPrefix(out, []byte("[MASKED:private_key]")) {
		t.Errorf("capped key block not masked: %q", out[:40])
	}
}

func TestEscapedJSONBytes(t *testing.T) {
	e := mustEngine(t, Config{})
	in := `{"a":"line\nbob@example.com\t` + stripeKey[1:] + `"}` + "\n" + `{"r":"\r` + stripeKey[1:] + `"}`
	got, _ := streamMask(e, in, nil, true)
	want := `{"a":"line\n[MASKED:email]\t` + stripeKey[1:] + `"}` + "\n" + `{"r":"\r` + stripeKey[1:] + `"}`
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

// TestEscapeParity checks that only an escaping backslash (one ending an odd
// run) makes the next byte part of an escape sequence, however the raw JSON
// is cut into reads.
func TestEscapeParity(t *testing.T) {
	e := mustEngine(t, Config{})
	for _, tt := range []struct{ in, want string }{
		// \\ is an escaped backslash: the r after it is text and starts a key.
		{`"\\` + stripeKey[1:] + `"`, `"\\` + stripeKey[1:] + `"`},
		{`"\\r` + stripeKey[1:] + `"`, `"\\[MASKED:stripe_key]"`},
		{`"\\\\\\r` + stripeKey[1:] + `"`, `"\\\\\\[MASKED:stripe_key]"`},
		// \r is an escape: CR, then k_live_..., which is no key.
		{`"\r` + stripeKey[1:] + `"`, `"\r` + stripeKey[1:] + `"`},
		{`"\\\r` + stripeKey[1:] + `"`, `"\\\r` + stripeKey[1:] + `"`},
		// After an escape sequence a token starts on a boundary.
		{`"\n` + awsKey + `"`, `"\n[MASKED:aws_access_key]"`},
		{`"\t` + openaiKey + `\n"`, `"\t[MASKED:openai_key]\n"`},
		{`"\\\n` + awsKey + `"`, `"\\\n[MASKED:aws_access_key]"`},
		// After an escaped backslash, n is a letter glued to the token.
		{`"\\n` + awsKey + `"`, `"\\n` + awsKey + `"`},
		{`"\\njane@example.com"`, `"\\[MASKED:email]"`},
		{`"\njane@example.com"`, `"\n[MASKED:email]"`},
		// Long runs: parity decides, wherever the reads cut them.
		{`"` + strings.Repeat(`\`, 21) + `n` + awsKey + `"`, `"` + strings.Repeat(`\`, 21) + `n[MASKED:aws_access_key]"`},
		{`"` + strings.Repeat(`\`, 20) + `n` + awsKey + `"`, `"` + strings.Repeat(`\`, 20) + `n` + awsKey + `"`},
		{`"` + strings.Repeat(`\`, 20) + `r` + stripeKey[1:] + `"`, `"` + strings.Repeat(`\`, 20) + `[MASKED:stripe_key]"`},
	} {
		got, _ := streamMask(e, tt.in, nil, true)
		if got != tt.want {
			t.Errorf("one shot %s:\n got  %s\n want %s", tt.in, got, tt.want)
		}
		for c := 1; c < len(tt.in); c++ {
			if got, _ := streamMask(e, tt.in, []int{c}, true); got != tt.want {
				t.Fatalf("cut at %d of %s:\n got  %s\n want %s", c, tt.in, got, tt.want)
			}
		}
		all := make([]int, len(tt.in)-1)
		for i := range all {
			all[i] = i + 1
		}
		if got, _ := streamMask(e, tt.in, all, true); got != tt.want {
			t.Errorf("byte by byte %s:\n got  %s\n want %s", tt.in, got, tt.want)
		}
	}
}

// TestEscapedJSONMatchesDecoded checks that masking a JSON string literal as
// raw bytes gives the same text as masking its decoded value, for text made
// of backslashes, quotes, line ends and secrets.
func TestEscapedJSONMatchesDecoded(t *testing.T) {
	e := mustEngine(t, Config{})
	atoms := []string{`\`, `\\`, `"`, "\n", "\r", "\t", " ", "n", "r", "x", "-", ".", "@", "rk", "sk_live_",
		awsKey, stripeKey, stripeKey[1:], openaiKey, email, "jane@example.com", jwtToken, visa, ssn}
	r := rand.New(rand.NewPCG(3, 4))
	for range 3000 {
		var b strings.Builder
		for range 1 + r.IntN(12) {
			b.WriteString(atoms[r.IntN(len(atoms))])
		}
		text := b.String()
		raw := string(appendQuoted(nil, []byte(text)))
		got, _ := streamMask(e, raw, randomCuts(r, len(raw)), true)
		want := e.MaskString(text)
		if dec := string(unquote(nil, []byte(got[1:len(got)-1]))); dec != want {
			t.Fatalf("text %q\n raw     %s\n masked  %s\n decoded %q\n want    %q", text, raw, got, dec, want)
		}
	}
}

// naive is the baseline: one stdlib regexp per detector over the whole buffer.
var naivePatterns = []string{
	`-----BEGIN[A-Z ]*PRIVATE KEY-----[\s\S]*?-----END[A-Z ]*PRIVATE KEY-----`,
	`\beyJ[A-Za-z0-9_-]{10,}\.ey[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]*`,
	`\b(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}\b`,
	`\b(?:gh[pousr]_[A-Za-z0-9]{36,251}|github_pat_[A-Za-z0-9_]{22,255})\b`,
	`\bsk-ant-[A-Za-z0-9_-]{32,300}`,
	`\bsk-[A-Za-z0-9_-]{32,300}`,
	`\bxox[bpars]-[A-Za-z0-9-]{10,255}`,
	`\b[rs]k_(?:live|test)_[A-Za-z0-9]{16,255}\b`,
	`\bAIza[A-Za-z0-9_-]{35}\b`,
	`\b(?:\d[ -]?){13,19}\b`,
	`\b\d{3}-\d{2}-\d{4}\b`,
	`[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9.-]+\.[A-Za-z]{2,}`,
}

func naiveMask(res []*regexp.Regexp, b []byte) []byte {
	for _, re := range res {
		b = re.ReplaceAll(b, []byte("[MASKED]"))
	}
	return b
}

func readAllWrap(t testing.TB, e *Engine, body []byte, ct, ce string) ([]byte, *Counts) {
	t.Helper()
	rc, c, _ := e.Wrap(io.NopCloser(bytes.NewReader(body)), ct, ce)
	out, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	if err := rc.Close(); err != nil {
		t.Fatal(err)
	}
	return out, c
}

var errEOF = io.EOF

func nopCloser(r io.Reader) io.ReadCloser { return io.NopCloser(r) }

// TestPrefilterExact checks that the byte-pair and word-boundary prefilter
// only skips positions where no match starts: an engine that tries every
// position with a registered first byte gives the same output.
func TestPrefilterExact(t *testing.T) {
	e := mustEngine(t, Config{Custom: []Custom{{Name: "emp", Pattern: `EMP-\d{6}`}}, Literals: []Literal{{Value: "hunter2hunter2"}}})
	slow := *e
	for i := range slow.pair {
		slow.pair[i] = ^uint64(0)
	}
	slow.noStart = [256][4]uint64{}
	for c := range 256 {
		if !slow.trig[c] {
			for d := range 256 {
				x := c<<8 | d
				slow.pair[x>>6] &^= 1 << (x & 63)
			}
		}
	}
	atoms := []string{" ", "a", "9", "0", "-", "_", ".", `\`, `\\`, "\\n", "sk", "task", "1718000000", "4111", " 1111", "123-45-6789",
		awsKey, "x" + awsKey, githubToken, stripeKey, "r" + stripeKey[1:], jwtToken, visa, amex, ssn, email, "EMP-123456", "hunter2hunter2"}
	r := rand.New(rand.NewPCG(8, 9))
	for range 5000 {
		var b strings.Builder
		for range 1 + r.IntN(10) {
			b.WriteString(atoms[r.IntN(len(atoms))])
		}
		in := b.String()
		if got, want := e.MaskString(in), slow.MaskString(in); got != want {
			t.Fatalf("%q:\n got  %q\n want %q", in, got, want)
		}
		got, _ := streamMask(e, in, randomCuts(r, len(in)), true)
		want, _ := streamMask(&slow, in, nil, true)
		if got != want {
			t.Fatalf("raw JSON %q:\n got  %q\n want %q", in, got, want)
		}
	}
	if got, want := e.MaskString(string(benchCorpus[:1<<20])), slow.MaskString(string(benchCorpus[:1<<20])); got != want {
		t.Error("benchmark corpus masked differently without the prefilter")
	}
}
