/** IPC channel names and the attachment scheme shared by the main process and the preload script. */
export const REQUEST_CHANNEL = 'session-keeper:request';
export const EVENT_CHANNEL = 'session-keeper:event';
export const ATTACHMENT_SCHEME = 'sk-attachment';
