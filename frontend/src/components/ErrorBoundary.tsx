// An error boundary per route (App.tsx wraps each page): a render error shows what broke and a
// "Try again" button that remounts the page, instead of a blank app. `resetKey` (the route's
// location) clears the error when the user navigates elsewhere.
import { Component, type ErrorInfo, type ReactNode } from 'react';
import { errorText } from '../api/errors';

interface Props {
  children: ReactNode;
  resetKey?: string;
}

interface State {
  error: unknown;
  key: string | undefined;
}

export class ErrorBoundary extends Component<Props, State> {
  state: State = { error: null, key: this.props.resetKey };

  static getDerivedStateFromError(error: unknown): Partial<State> {
    return { error };
  }

  static getDerivedStateFromProps(props: Props, state: State): Partial<State> | null {
    return props.resetKey !== state.key ? { error: null, key: props.resetKey } : null;
  }

  componentDidCatch(error: unknown, info: ErrorInfo): void {
    console.error('page crashed', error, info.componentStack);
  }

  render(): ReactNode {
    if (!this.state.error) return this.props.children;
    return (
      <div className="page" role="alert" data-testid="page-error">
        <div className="alert error">
          <strong>This page failed to render.</strong> {errorText(this.state.error)}
        </div>
        <button className="btn" onClick={() => this.setState({ error: null })}>
          Try again
        </button>
      </div>
    );
  }
}
