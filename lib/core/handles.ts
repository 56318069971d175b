// A file descriptor the addon handed to JS (the DM control fd, a lock, a held loop device), owned by an
// object: close() releases it, and if the object is dropped unclosed, its finalizer closes the fd, so a lost
// handle never leaks a descriptor (or keeps a lock, or an autoclear loop attached) for the process's life.
import { native } from './binding';
import { dmError } from './errors';

type Closer = (fd: number) => void;
const finalizer = new FinalizationRegistry<{ fd: number; close: Closer }>(({ fd, close }) => {
  try { close(fd); } catch { /* already gone: nothing to give back */ }
});

export class FdHandle {
  private value: number;

  constructor(fd: number, private readonly what: string, private readonly closeFd: Closer = native.closeFd) {
    this.value = fd;
    finalizer.register(this, { fd, close: closeFd }, this);
  }

  /** The descriptor; ERR_DM_CLOSED once closed. */
  get fd(): number {
    if (this.value < 0) throw dmError('ERR_DM_CLOSED', `${this.what} was closed`);
    return this.value;
  }

  get closed(): boolean { return this.value < 0; }

  /** Closes the descriptor; a second close does nothing. */
  close(): void {
    const fd = this.value;
    if (fd < 0) return;
    this.value = -1;
    finalizer.unregister(this);
    this.closeFd(fd);
  }
}
