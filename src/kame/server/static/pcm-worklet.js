// AudioWorklet: collects microphone samples into 80 ms chunks of 1920 samples at 24 kHz and
// posts them to the page as Float32Array. If the AudioContext does not run at 24 kHz (some
// browsers refuse a 24 kHz context with a microphone), it resamples by linear interpolation
// (processorOptions.ratio = context rate / 24000).
class PcmCapture extends AudioWorkletProcessor {
  constructor(options) {
    super();
    this.ratio = (options && options.processorOptions && options.processorOptions.ratio) || 1;
    this.buf = new Float32Array(1920);
    this.n = 0;
    this.pos = 0; // position of the next output sample, in input samples (relative to `prev`)
    this.prev = 0; // last input sample of the previous block
  }
  push(x) {
    this.buf[this.n++] = x;
    if (this.n === this.buf.length) {
      this.port.postMessage(this.buf);
      this.buf = new Float32Array(1920);
      this.n = 0;
    }
  }
  process(inputs) {
    const ch = inputs[0] && inputs[0][0];
    if (!ch) return true;
    if (this.ratio === 1) {
      for (let i = 0; i < ch.length; i++) this.push(ch[i]);
      return true;
    }
    // input index -1 is `prev`, 0..len-1 is ch
    while (this.pos < ch.length - 1) {
      const i = Math.floor(this.pos), f = this.pos - i;
      const a = i < 0 ? this.prev : ch[i], b = ch[i + 1];
      this.push(a + (b - a) * f);
      this.pos += this.ratio;
    }
    this.pos -= ch.length;
    this.prev = ch[ch.length - 1];
    return true;
  }
}
registerProcessor("pcm-capture", PcmCapture);
